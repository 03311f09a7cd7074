#include "actors/payment_rules.hpp"

#include <algorithm>

namespace paybus {

std::optional<std::string> choose_channel(const std::vector<route_candidate>& channels,
                                          const std::string& requested,
                                          const std::set<std::string>& excluded,
                                          double draw) {
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

bool circuit_breaker::allow(int64_t now_ms) {
  if (open_until_ms_ == 0)
    return true;
  if (now_ms < open_until_ms_ || probing_)
    return false;
  probing_ = true;
  return true;
}

void circuit_breaker::record(bool success, int64_t now_ms) {
  if (probing_) {  // the half-open probe decides alone
    probing_ = false;
    if (success) {
      failures_ = 0;
      open_until_ms_ = 0;
      recent_ = 0;
      recent_count_ = 0;
    } else {
      ++failures_;
      open_until_ms_ = now_ms + open_ms_;
    }
    return;
  }
  constexpr uint32_t mask = (1u << window) - 1;
  recent_ = ((recent_ << 1) | (success ? 0u : 1u)) & mask;
  recent_count_ = std::min(recent_count_ + 1, window);
  int recent_failures = __builtin_popcount(recent_);
  bool rate_too_high = recent_count_ == window && recent_failures * 2 >= window
                       && recent_failures >= failures_to_open_;
  failures_ = success ? 0 : failures_ + 1;
  if (open_until_ms_ == 0 && (failures_ >= failures_to_open_ || rate_too_high))
    open_until_ms_ = now_ms + open_ms_;
}

circuit_breaker::state circuit_breaker::current(int64_t now_ms) const {
  if (open_until_ms_ == 0)
    return state::closed;
  if (probing_ || now_ms >= open_until_ms_)
    return state::half_open;  // probing, or the next request will probe
  return state::open;
}

int64_t webhook_retry_delay(int64_t attempt, int64_t base_ms, int64_t max_ms) {
  int64_t delay = base_ms;
  for (int64_t i = 0; i < attempt && delay < max_ms; ++i)
    delay *= 2;
  return std::min(delay, max_ms);
}

bool is_final_status(const std::string& status) {
  return status == payment_status::succeeded || status == payment_status::failed
         || status == payment_status::closed;
}

decision after_pay(const channel_outcome& outcome, const rule_timing& timing) {
  const auto& status = outcome.status;
  if (status == "SUCCEEDED" || status == "FAILED")
    return {next_step::record_result, status, 0};
  if (status == "ACCEPTED")
    return {next_step::query_later, {}, timing.accepted_query_ms};
  if (status == "REFUSED" || status == "UNAVAILABLE")
    return {next_step::reroute, {}, 0};  // never taken: safe elsewhere
  // UNKNOWN (and anything unexpected): it may have been taken. Ask first.
  return {next_step::query_later, {}, timing.unknown_query_ms};
}

decision after_query(const channel_outcome& outcome, int queries, bool expired,
                     const rule_timing& timing, int64_t unsettled_ms) {
  const auto& status = outcome.status;
  if (status == "SUCCEEDED" || status == "FAILED")
    return {next_step::record_result, status, 0};
  if (status == "NOT_FOUND") {
    if (unsettled_ms > 0)
      return {next_step::query_later, {}, unsettled_ms};
    if (expired)
      return {next_step::record_result, payment_status::closed, 0};
    return {next_step::reroute, {}, 0};
  }
  int64_t base = status == "ACCEPTED" ? timing.accepted_query_ms : timing.unknown_query_ms;
  int64_t delay = base;
  for (int i = 1; i < queries && delay < timing.max_query_ms; ++i)
    delay *= 2;
  return {next_step::query_later, {}, std::min(delay, timing.max_query_ms)};
}

} // namespace paybus
