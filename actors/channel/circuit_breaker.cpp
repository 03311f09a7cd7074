#include "actors/channel/circuit_breaker.hpp"

#include <algorithm>

namespace paybus {

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

}  // namespace paybus
