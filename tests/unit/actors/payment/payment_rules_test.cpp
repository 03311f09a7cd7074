#include <map>
#include <random>

#include <catch2/catch.hpp>

#include "actors/payment/payment_rules.hpp"

using namespace paybus;

namespace {

channel_outcome said(const std::string& status) {
  auto parsed = parse_channel_status(status);
  REQUIRE(parsed);
  return channel_outcome{"1", "sim-a", *parsed, "T", ""};
}

}  // namespace

TEST_CASE("router: weights decide the share, within tolerance") {
  std::vector<route_candidate> channels{{"a", 70, true}, {"b", 30, true}};
  std::mt19937_64 rng{42};
  std::map<std::string, int> counts;
  for (int i = 0; i < 100000; ++i)
    ++counts[*choose_channel(channels, "", {}, std::uniform_real_distribution<double>{0, 1}(rng))];
  CHECK(counts["a"] == Approx(70000).epsilon(0.02));
  CHECK(counts["b"] == Approx(30000).epsilon(0.03));
}

TEST_CASE("router: unhealthy, excluded and zero-weight channels get nothing") {
  std::vector<route_candidate> channels{{"a", 50, false}, {"b", 50, true}, {"c", 0, true}};
  for (double draw : {0.0, 0.3, 0.7, 0.999})
    CHECK(choose_channel(channels, "", {}, draw) == std::optional<std::string>{"b"});
  CHECK_FALSE(choose_channel(channels, "", {"b"}, 0.5));
  CHECK_FALSE(choose_channel({}, "", {}, 0.5));
}

TEST_CASE("router: a channel the client named is used, or none, never another") {
  std::vector<route_candidate> channels{{"a", 50, true}, {"b", 50, true}};
  CHECK(choose_channel(channels, "b", {}, 0.0) == std::optional<std::string>{"b"});
  CHECK_FALSE(choose_channel(channels, "b", {"b"}, 0.0));
  channels[1].healthy = false;
  CHECK_FALSE(choose_channel(channels, "b", {}, 0.0));
  CHECK_FALSE(choose_channel(channels, "nowhere", {}, 0.0));
}

TEST_CASE("after pay: every outcome's transition") {
  rule_timing timing;
  CHECK(after_pay(said("SUCCEEDED"), timing).step == next_step::record_result);
  CHECK(after_pay(said("SUCCEEDED"), timing).result_status == payment_status::succeeded);
  CHECK(after_pay(said("FAILED"), timing).result_status == payment_status::failed);
  auto accepted = after_pay(said("ACCEPTED"), timing);
  CHECK(accepted.step == next_step::query_later);
  CHECK(accepted.delay_ms == timing.accepted_query_ms);
  // Only what the channel never took may go elsewhere.
  CHECK(after_pay(said("REFUSED"), timing).step == next_step::reroute);
  CHECK(after_pay(said("UNAVAILABLE"), timing).step == next_step::reroute);
  // Unknown: ask the same channel, never send elsewhere first.
  auto unknown = after_pay(said("UNKNOWN"), timing);
  CHECK(unknown.step == next_step::query_later);
  CHECK(unknown.delay_ms == timing.unknown_query_ms);
  CHECK(after_pay(said("NOT_FOUND"), timing).step == next_step::query_later);
  // A word the protocol does not have never becomes an outcome: the channel
  // client takes such an answer as UNKNOWN (tests/unit: parse_channel_status).
  CHECK_FALSE(parse_channel_status("garbage"));
}

TEST_CASE("after query: every outcome's transition, expiry and backoff") {
  rule_timing timing;
  CHECK(after_query(said("SUCCEEDED"), 1, false, timing, 0, false).result_status
        == payment_status::succeeded);
  CHECK(after_query(said("FAILED"), 1, true, timing, 0, false).result_status
        == payment_status::failed);
  CHECK(after_query(said("NOT_FOUND"), 1, false, timing, 0, false).step == next_step::reroute);
  auto closed = after_query(said("NOT_FOUND"), 1, true, timing, 0, false);
  CHECK(closed.step == next_step::record_result);
  CHECK(closed.result_status == payment_status::closed);
  // ACCEPTED keeps waiting even past expiry: the channel has the money.
  CHECK(after_query(said("ACCEPTED"), 1, true, timing, 0, false).step == next_step::query_later);
  CHECK(after_query(said("UNKNOWN"), 1, false, timing, 0, false).delay_ms
        == timing.unknown_query_ms);
  CHECK(after_query(said("UNKNOWN"), 3, false, timing, 0, false).delay_ms
        == 4 * timing.unknown_query_ms);
  CHECK(after_query(said("UNKNOWN"), 50, false, timing, 0, false).delay_ms == timing.max_query_ms);
}

TEST_CASE("after query: a NOT_FOUND sooner than the channel's settle time is asked again") {
  rule_timing timing;
  // The pay request may still wait in the channel's queues: neither another
  // channel nor CLOSED, but the same question when the settle time is up.
  for (bool expired : {false, true}) {
    auto early = after_query(said("NOT_FOUND"), 1, expired, timing, 2500, false);
    CHECK(early.step == next_step::query_later);
    CHECK(early.delay_ms == 2500);
    CHECK(early.result_status == payment_status::processing);
  }
  // Settled: believed.
  CHECK(after_query(said("NOT_FOUND"), 2, false, timing, 0, false).step == next_step::reroute);
  CHECK(after_query(said("NOT_FOUND"), 2, true, timing, 0, false).result_status
        == payment_status::closed);
  // Only NOT_FOUND waits: a final answer is final however soon it comes.
  CHECK(after_query(said("SUCCEEDED"), 1, false, timing, 2500, false).result_status
        == payment_status::succeeded);
  CHECK(after_query(said("FAILED"), 1, true, timing, 2500, false).result_status
        == payment_status::failed);
  CHECK(after_query(said("UNKNOWN"), 1, false, timing, 2500, false).delay_ms
        == timing.unknown_query_ms);
}

TEST_CASE("channel statuses: each round-trips through its protocol word, nothing else parses") {
  for (auto status : {channel_status::succeeded, channel_status::failed, channel_status::accepted,
                      channel_status::not_found, channel_status::refused,
                      channel_status::unavailable, channel_status::unknown})
    CHECK(parse_channel_status(to_string(status)) == status);
  CHECK(std::string{to_string(channel_status::not_found)} == "NOT_FOUND");
  CHECK_FALSE(parse_channel_status("succeeded"));
  CHECK_FALSE(parse_channel_status(""));
  CHECK_FALSE(parse_channel_status("PROCESSING"));
}

TEST_CASE(
  "after query: a NOT_FOUND from a channel that said it holds the payment is a contradiction") {
  rule_timing timing;
  for (bool expired : {false, true}) {
    for (int64_t unsettled : {int64_t{0}, int64_t{2500}}) {
      auto contradicted = after_query(said("NOT_FOUND"), 3, expired, timing, unsettled, true);
      // Neither another channel nor CLOSED: asked again, as after ACCEPTED.
      CHECK(contradicted.step == next_step::query_later);
      CHECK(contradicted.contradiction);
      CHECK(contradicted.result_status == payment_status::processing);
      CHECK(contradicted.delay_ms
            == after_query(said("ACCEPTED"), 3, expired, timing, 0, true).delay_ms);
    }
  }
  // What it says of a payment it holds is believed, and contradicts nothing.
  auto paid = after_query(said("SUCCEEDED"), 1, true, timing, 0, true);
  CHECK(paid.result_status == payment_status::succeeded);
  CHECK_FALSE(paid.contradiction);
  CHECK_FALSE(after_query(said("ACCEPTED"), 1, false, timing, 0, true).contradiction);
  CHECK_FALSE(after_query(said("UNKNOWN"), 1, false, timing, 0, true).contradiction);
}
