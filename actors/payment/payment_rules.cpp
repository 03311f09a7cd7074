#include "actors/payment/payment_rules.hpp"

#include <algorithm>

namespace paybus {

std::optional<std::string> choose_channel(const std::vector<route_candidate>& channels,
                                          const std::string& requested,
                                          const std::set<std::string>& excluded, double draw) {
  if (!requested.empty()) {
    // The client named the channel: that one or none (never silently another).
    for (const auto& channel : channels)
      if (channel.id == requested && channel.healthy && !excluded.count(channel.id))
        return channel.id;
    return std::nullopt;
  }
  int64_t total = 0;
  for (const auto& channel : channels)
    if (channel.healthy && channel.weight > 0 && !excluded.count(channel.id))
      total += channel.weight;
  if (total == 0)
    return std::nullopt;
  auto point = static_cast<int64_t>(draw * static_cast<double>(total));
  for (const auto& channel : channels) {
    if (!channel.healthy || channel.weight <= 0 || excluded.count(channel.id))
      continue;
    if (point < channel.weight)
      return channel.id;
    point -= channel.weight;
  }
  return std::nullopt;
}

namespace {

/// The payment's final status for a channel's SUCCEEDED or FAILED.
payment_status settled_as(channel_status status) {
  return status == channel_status::succeeded ? payment_status::succeeded : payment_status::failed;
}

}  // namespace

decision after_pay(const channel_outcome& outcome, const rule_timing& timing) {
  switch (outcome.status) {
    case channel_status::succeeded:
    case channel_status::failed:
      return {next_step::record_result, settled_as(outcome.status), 0};
    case channel_status::accepted:
      return {next_step::query_later, payment_status::processing, timing.accepted_query_ms};
    case channel_status::refused:
    case channel_status::unavailable:
      return {next_step::reroute, payment_status::processing, 0};  // never taken: safe elsewhere
    case channel_status::not_found:                                // not an answer to a pay request
    case channel_status::unknown:
      break;
  }
  // UNKNOWN (and anything unexpected): it may have been taken. Ask first.
  return {next_step::query_later, payment_status::processing, timing.unknown_query_ms};
}

decision after_query(const channel_outcome& outcome, int queries, bool expired,
                     const rule_timing& timing, int64_t unsettled_ms, bool held) {
  const auto status = outcome.status;
  if (status == channel_status::succeeded || status == channel_status::failed)
    return {next_step::record_result, settled_as(status), 0};
  if (status == channel_status::not_found && held) {
    auto asked = after_query({outcome.pay_id, outcome.channel_id, channel_status::accepted, "", ""},
                             queries, expired, timing, 0, held);
    asked.contradiction = true;
    return asked;
  }
  if (status == channel_status::not_found) {
    if (unsettled_ms > 0)
      return {next_step::query_later, payment_status::processing, unsettled_ms};
    if (expired)
      return {next_step::record_result, payment_status::closed, 0};
    return {next_step::reroute, payment_status::processing, 0};
  }
  int64_t base = status == channel_status::accepted ? timing.accepted_query_ms
                                                    : timing.unknown_query_ms;
  int64_t delay = base;
  for (int i = 1; i < queries && delay < timing.max_query_ms; ++i)
    delay *= 2;
  return {next_step::query_later, payment_status::processing, std::min(delay, timing.max_query_ms)};
}

}  // namespace paybus
