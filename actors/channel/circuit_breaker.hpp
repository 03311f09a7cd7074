#pragma once

// The circuit breaker of one channel, a pure state machine over time passed in.

#include <cstdint>

namespace paybus {

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
  uint32_t recent_ = 0;  // last `window` outcomes, 1 bits = failures
  int recent_count_ = 0;
  int64_t open_until_ms_ = 0;  // 0: closed
  bool probing_ = false;
};

}  // namespace paybus
