#pragma once

// The operator's switches, changed live through the admin console and read
// by the actors they steer: each channel's routing weight, whether it takes
// new payments, whether its breaker is held open; which non-core work is
// paused (degraded); the log level. A plain value (switch_state) is what is
// persisted and shown; live_switches shares the current one between threads.

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace paybus {

/// Non-core work that can be paused at peak (API.md section 8, `degrade`).
enum class degrade_switch : uint8_t { webhooks = 0, db_feed, order_repair, reconciliation };

constexpr std::array<degrade_switch, 4> all_degrade_switches{degrade_switch::webhooks,
                                                             degrade_switch::db_feed,
                                                             degrade_switch::order_repair,
                                                             degrade_switch::reconciliation};

/// Its name in commands, JSON and metrics: "webhooks", "db_feed", ...
const char* to_string(degrade_switch which);
std::optional<degrade_switch> parse_degrade_switch(std::string_view name);

/// One channel as the operator steers it.
struct channel_switch {
  std::string id;
  int64_t weight = 0;
  bool enabled = true;
  bool breaker_forced = false;  // held open: nothing is sent to it
  bool changed = false;         // set through the console: kept over the config's values
};

struct switch_state {
  std::vector<channel_switch> channels;  // in the configuration's order
  std::array<bool, 4> paused{};          // by degrade_switch
  std::string log_level;                 // "" until set through the console

  channel_switch* find(std::string_view channel_id);
  const channel_switch* find(std::string_view channel_id) const;
  bool is_paused(degrade_switch which) const {
    return paused[static_cast<size_t>(which)];
  }
};

/// The JSON kept in the local store: the channels changed through the
/// console, the paused switches and the log level.
std::string encode_switches(const switch_state& state);
/// Lays what `stored` holds over `state` (the configuration's channels):
/// channels the configuration no longer has are left out and named in
/// `dropped`. False with `error` if `stored` cannot be read.
bool overlay_switches(std::string_view stored, switch_state& state,
                      std::vector<std::string>& dropped, std::string& error);

/// The current switches, shared between threads. Writers replace the whole
/// state; readers that look often keep a copy and take a new one when
/// `version()` moved (one relaxed load a look).
class live_switches {
public:
  explicit live_switches(switch_state initial);

  switch_state snapshot() const;
  void replace(switch_state next);
  uint64_t version() const {
    return version_.load(std::memory_order_acquire);
  }
  bool paused(degrade_switch which) const {
    return paused_[static_cast<size_t>(which)].load(std::memory_order_relaxed);
  }

private:
  mutable std::mutex mutex_;
  switch_state state_;
  std::array<std::atomic<bool>, 4> paused_{};
  std::atomic<uint64_t> version_{1};
};

/// A reader's copy of the switches, refreshed when they changed.
class switch_view {
public:
  explicit switch_view(const live_switches* switches = nullptr) : switches_(switches) {
  }

  /// True (and `state()` is new) if the switches changed since the last look.
  bool refresh() {
    if (switches_ == nullptr || switches_->version() == seen_)
      return false;
    seen_ = switches_->version();
    state_ = switches_->snapshot();
    return true;
  }
  const switch_state& state() const {
    return state_;
  }

private:
  const live_switches* switches_;
  uint64_t seen_ = 0;
  switch_state state_;
};

}  // namespace paybus
