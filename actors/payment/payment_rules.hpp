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
                                          const std::set<std::string>& excluded, double draw);

enum class next_step {
  record_result,  // final: write the result (status in `result_status`)
  query_later,    // ask the same channel after `delay_ms`
  reroute,        // the channel never took it: another channel may
  route_later,    // nothing can take it now: try routing after `delay_ms`
};

struct decision {
  next_step step = next_step::query_later;
  payment_status result_status = payment_status::processing;  // final when recording
  int64_t delay_ms = 0;
  // The answer contradicts what the channel said before (a NOT_FOUND for a
  // payment it said it holds): reported, and believed no more than that.
  bool contradiction = false;
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
/// and neither sent elsewhere nor closed. `held`: the channel said before
/// that it holds the payment (ACCEPTED), so a NOT_FOUND from it is a
/// contradiction (a lagging replica, a channel's bug): the payment stays with
/// it and it is asked again, as if it had said ACCEPTED.
decision after_query(const channel_outcome& outcome, int queries, bool expired,
                     const rule_timing& timing, int64_t unsettled_ms, bool held);

}  // namespace paybus
