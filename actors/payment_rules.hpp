#pragma once

// The money logic of driving a payment through channels, as pure functions
// (unit-tested without an actor system; the coordinator wires them up).

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "messages/types.hpp"

namespace paybus {

/// A channel as the router sees it.
struct route_candidate {
  std::string id;
  int64_t weight = 0;
  bool healthy = true;
};

/// Picks a channel: the one the client named (if usable), else by weight
/// among healthy channels not excluded. `draw` is uniform in [0, 1).
/// Nothing if no channel can take the payment now.
std::optional<std::string> choose_channel(const std::vector<route_candidate>& channels,
                                          const std::string& requested,
                                          const std::set<std::string>& excluded,
                                          double draw);

enum class next_step {
  record_result,  // final: write the result (status in `result_status`)
  query_later,    // ask the same channel after `delay_ms`
  reroute,        // the channel never took it: another channel may
  route_later,    // nothing can take it now: try routing after `delay_ms`
};

struct decision {
  next_step step = next_step::query_later;
  std::string result_status;
  int64_t delay_ms = 0;
};

struct rule_timing {
  int64_t accepted_query_ms = 3000;  // ACCEPTED: wait for the notification, then ask
  int64_t unknown_query_ms = 500;    // UNKNOWN: ask soon
  int64_t max_query_ms = 30'000;     // backoff cap for repeated queries
};

/// After the channel's answer to a pay request.
decision after_pay(const channel_outcome& outcome, const rule_timing& timing);

/// After the channel's answer to a query; `queries` asked so far (backoff),
/// `expired` if the payment is past its expire_seconds. `unsettled_ms`: how
/// much sooner than the channel's settle time after the last pay request the
/// query left (0: not sooner). A NOT_FOUND that soon may only mean the
/// request still waits in the channel's queues, so it is asked again then,
/// and neither sent elsewhere nor closed.
decision after_query(const channel_outcome& outcome, int queries, bool expired,
                     const rule_timing& timing, int64_t unsettled_ms);

/// A circuit breaker: closed until `failures_to_open` consecutive failures,
/// or until at least half of the last `window` requests failed (with at least
/// `failures_to_open` of them), then open for `open_ms`, then half-open: one
/// probe decides.
class circuit_breaker {
public:
  static constexpr int window = 20;

  enum class state { closed = 0, open = 1, half_open = 2 };

  circuit_breaker(int failures_to_open, int64_t open_ms)
    : failures_to_open_(failures_to_open), open_ms_(open_ms) {
  }

  /// Whether a request may go out at `now_ms` (taking the probe if half-open).
  bool allow(int64_t now_ms);
  /// The answer to an allowed request.
  void record(bool success, int64_t now_ms);
  state current(int64_t now_ms) const;
  int consecutive_failures() const {
    return failures_;
  }

private:
  int failures_to_open_;
  int64_t open_ms_;
  int failures_ = 0;
  uint32_t recent_ = 0;        // last `window` outcomes, 1 bits = failures
  int recent_count_ = 0;
  int64_t open_until_ms_ = 0;  // 0: closed
  bool probing_ = false;
};

/// Delay before retry number `attempt + 1` of a webhook: doubling from
/// `base_ms`, capped at `max_ms`.
int64_t webhook_retry_delay(int64_t attempt, int64_t base_ms, int64_t max_ms);

/// True for SUCCEEDED, FAILED and CLOSED.
bool is_final_status(const std::string& status);

} // namespace paybus
