#pragma once

// The webhook delivery plan as pure functions (the notifier wires them to
// the store and the sender): the retry schedule, what an attempt's answer
// means, and how free delivery slots are shared among merchants.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace paybus {

/// Delay before retry number `attempt + 1` of a webhook: doubling from
/// `base_ms`, capped at `max_ms`.
int64_t webhook_retry_delay(int64_t attempt, int64_t base_ms, int64_t max_ms);

struct webhook_retry_policy {
  int64_t base_ms = 1000;                     // first retry; doubles each time
  int64_t max_ms = 3'600'000;                 // longest wait between attempts
  int64_t give_up_after_ms = 25 * 3'600'000;  // from the first due time
  // A webhook with no URL to go to (none on the order, none configured for
  // its merchant any more) waits this long, not counted as an attempt, and
  // is looked at again: never dropped.
  int64_t untargeted_wait_ms = 60'000;
};

enum class attempt_outcome { delivered, retried, given_up };

struct attempt_plan {
  attempt_outcome outcome = attempt_outcome::delivered;
  int64_t next_due_ms = 0;  // retried: when; otherwise 0 (the entry goes)
};

/// What attempt number `attempt` (0 for the first) of a webhook first due at
/// `first_due_ms` leads to, answered `http_status` (0: no answer) at
/// `now_ms`: any 2xx ends it; otherwise it is tried again later, until
/// `give_up_after_ms` has passed since it was first due.
attempt_plan plan_after_attempt(int32_t http_status, int64_t attempt, int64_t first_due_ms,
                                int64_t now_ms, const webhook_retry_policy& policy);

/// The share of one merchant: how many of its queue's due entries a round
/// may read, given `busy` deliveries of it in flight or waiting for the
/// store (still at the head of its queue), `per_merchant` the most it may
/// have in flight, and `idle_slots` free slots in all.
size_t webhook_room(size_t busy, size_t per_merchant, size_t idle_slots);

/// Which due entries start now, in order. `due_merchants[i]` is the merchant
/// of due entry i (each merchant's oldest first), `skip[i]` is true for an
/// entry already in flight. Free slots go first to the merchants with the
/// fewest deliveries in flight (`busy`), at most `per_merchant` each, until
/// `capacity` deliveries are in flight (`in_flight` now): merchants whose
/// endpoints hang never hold up the others.
std::vector<size_t> plan_starts(const std::vector<std::string>& due_merchants,
                                const std::vector<bool>& skip,
                                const std::map<std::string, size_t>& busy, size_t per_merchant,
                                size_t capacity, size_t in_flight);

}  // namespace paybus
