#pragma once

// The one pending tick of an actor that works in rounds (the database sink,
// the notifier). A delayed message cannot be taken back, so every tick
// carries a generation: replacing the pending tick makes the old one stale,
// and a stale tick is dropped when it arrives. (Without this, a poll cut
// short by a wake still came and ran a round that scheduled another, and the
// rounds a second grew for as long as the bus ran.)

#include <chrono>
#include <cstdint>

#include "messages/interfaces.hpp"

namespace paybus {

class round_timer {
public:
  /// A tick `delay_ms` from now (0: at once), unless one is pending.
  template <class Self>
  void schedule(Self* self, int64_t delay_ms) {
    if (pending_)
      return;
    pending_ = true;
    delay_ms_ = delay_ms;
    ++generation_;
    if (delay_ms <= 0)
      self->send(self, tick_atom::value, generation_);
    else
      self->delayed_send(self, std::chrono::milliseconds{delay_ms}, tick_atom::value, generation_);
  }

  /// The same, in place of the pending tick.
  template <class Self>
  void replace(Self* self, int64_t delay_ms) {
    pending_ = false;
    schedule(self, delay_ms);
  }

  /// Whether a tick that arrived is the pending one (then a round is due and
  /// nothing is pending any more) rather than a stale one.
  bool take(uint64_t generation) {
    if (!pending_ || generation != generation_)
      return false;
    pending_ = false;
    return true;
  }

  bool pending() const {
    return pending_;
  }

  /// The delay the pending tick was scheduled with.
  int64_t pending_delay_ms() const {
    return delay_ms_;
  }

private:
  bool pending_ = false;
  int64_t delay_ms_ = 0;
  uint64_t generation_ = 0;
};

}  // namespace paybus
