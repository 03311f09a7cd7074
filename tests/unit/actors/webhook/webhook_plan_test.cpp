#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "actors/webhook/webhook_plan.hpp"

using namespace paybus;

TEST_CASE("webhook retry schedule doubles, is capped, and spans at least 24 hours") {
  CHECK(webhook_retry_delay(0, 1000, 3'600'000) == 1000);
  CHECK(webhook_retry_delay(1, 1000, 3'600'000) == 2000);
  CHECK(webhook_retry_delay(5, 1000, 3'600'000) == 32000);
  CHECK(webhook_retry_delay(12, 1000, 3'600'000) == 3'600'000);
  CHECK(webhook_retry_delay(1000, 1000, 3'600'000) == 3'600'000);
  // With the defaults, the attempts within 25 hours: delivery keeps being
  // tried for at least 24 hours (give_up_after_ms = 25 h).
  int64_t elapsed = 0;
  int attempts = 0;
  while (elapsed < 24 * 3'600'000LL) {
    elapsed += webhook_retry_delay(attempts, 1000, 3'600'000);
    ++attempts;
  }
  CHECK(attempts > 24);
}

TEST_CASE("webhook attempt: a 2xx delivers, anything else retries until the give-up time") {
  webhook_retry_policy policy{1000, 3'600'000, 25 * 3'600'000};
  for (int32_t status : {200, 201, 204, 299}) {
    auto plan = plan_after_attempt(status, 3, 0, 5000, policy);
    CHECK(plan.outcome == attempt_outcome::delivered);
    CHECK(plan.next_due_ms == 0);
  }
  for (int32_t status : {0, 199, 300, 404, 500, 503}) {
    auto plan = plan_after_attempt(status, 2, 0, 5000, policy);
    CHECK(plan.outcome == attempt_outcome::retried);
    CHECK(plan.next_due_ms == 5000 + 4000);  // the third retry waits 4 s
  }
  // The 25 hours run from the first due time, not from this attempt.
  auto last = plan_after_attempt(500, 30, 1000, 1000 + 25 * 3'600'000, policy);
  CHECK(last.outcome == attempt_outcome::retried);
  auto over = plan_after_attempt(500, 31, 1000, 1000 + 25 * 3'600'000 + 1, policy);
  CHECK(over.outcome == attempt_outcome::given_up);
  CHECK(over.next_due_ms == 0);
  // Even then a 2xx is a delivery.
  CHECK(plan_after_attempt(200, 31, 1000, 1000 + 26 * 3'600'000, policy).outcome
        == attempt_outcome::delivered);
}

TEST_CASE("webhook room: a merchant reads what it holds plus its share of the idle slots") {
  CHECK(webhook_room(0, 63, 64) == 63);
  CHECK(webhook_room(0, 63, 5) == 5);
  CHECK(webhook_room(10, 63, 5) == 15);
  CHECK(webhook_room(63, 63, 1) == 63);  // at its cap: nothing new
  CHECK(webhook_room(2, 3, 0) == 2);
}

TEST_CASE("webhook starts: free slots go first to the merchants with the fewest in flight") {
  // slow has three due and two in flight; fast has two due and none.
  std::vector<std::string> due{"slow", "slow", "slow", "fast", "fast"};
  std::vector<bool> skip{true, true, false, false, false};  // slow's first two are in flight
  std::map<std::string, size_t> busy{{"slow", 2}};
  auto starts = plan_starts(due, skip, busy, 3, 4, 2);
  // Two slots free: both to fast (levels 0 and 1) before slow's third (level 2).
  CHECK(starts == std::vector<size_t>{3, 4});
  // With room for everything, each merchant's oldest first, and in-flight ones never again.
  starts = plan_starts(due, skip, busy, 3, 10, 2);
  CHECK(starts == std::vector<size_t>{3, 4, 2});
}

TEST_CASE("webhook starts: no merchant takes every slot, however many it has due") {
  std::vector<std::string> due(10, "hangs");
  std::vector<bool> skip(10, false);
  auto starts = plan_starts(due, skip, {}, 3, 4, 0);
  CHECK(starts.size() == 3);  // per_merchant = capacity - 1: one slot stays for others
  due.push_back("other");
  skip.push_back(false);
  starts = plan_starts(due, skip, {{"hangs", 3}}, 3, 4, 3);
  CHECK(starts == std::vector<size_t>{10});
  // Every slot busy: nothing starts.
  CHECK(plan_starts(due, skip, {{"hangs", 3}}, 3, 4, 4).empty());
}
