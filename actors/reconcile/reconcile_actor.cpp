#include "actors/reconcile/reconcile_actor.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <stdexcept>

#include <caf/scoped_actor.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/reconcile/store_side.hpp"
#include "common/clock.hpp"
#include "common/live_switches.hpp"
#include "common/metrics.hpp"
#include "common/thread_name.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

namespace {

struct reconciliation_state {
  reconciliation_settings settings;
  local_store* store = nullptr;
  store_actor writer;
  metrics* figures = nullptr;
  int64_t retry_ms = 60'000;  // after a failed daily run; doubles to an hour
  bool said_paused = false;   // the wait for `degrade reconciliation off` is logged once
};

using reconciliation_pointer = reconciliation_actor::stateful_pointer<reconciliation_state>;

/// Milliseconds from `now_ms` to the next `at` ("HH:MM" UTC).
int64_t until_next(const std::string& at, int64_t now_ms) {
  int64_t offset = (std::stoll(at.substr(0, 2)) * 60 + std::stoll(at.substr(3, 2))) * 60'000;
  int64_t today = now_ms - now_ms % day_ms;
  int64_t next = today + offset;
  if (next <= now_ms)
    next += day_ms;
  return next - now_ms;
}

bool reported(const reconciliation_state& st, const std::string& date) {
  std::error_code ignored;
  return std::filesystem::exists(std::filesystem::path{st.settings.places.reports_dir}
                                   / "reconciliation" / st.settings.source.channel_id
                                   / (date + ".summary.json"),
                                 ignored);
}

/// One run, whole; false with `error` when it failed.
bool run(reconciliation_pointer self, const reconciliation::run_request& request,
         reconciliation::run_summary& summary, std::string& error) {
  auto& st = self->state;
  caf::scoped_actor waiter{self->system()};
  reconciliation::store_bus_view bus{
    *st.store, [&](const payment_result& result) {
      bool made_final = false;
      std::string failure;
      waiter->request(st.writer, std::chrono::seconds{60}, result_atom::value, result)
        .receive(
          [&](result_recorded& recorded) { made_final = recorded.joined && recorded.changed; },
          [&](caf::error& problem) { failure = caf::to_string(problem); });
      if (!failure.empty())
        throw std::runtime_error("the store writer did not write a repair: " + failure);
      return made_final;
    }};
  spdlog::info("reconciliation {} {}: started ({})", request.channel_id, request.date,
               request.file.empty() ? "the channel's statement" : request.file);
  if (!reconciliation::run_reconciliation(request, st.settings.source, st.settings.places, bus,
                                          summary, error)) {
    spdlog::error("reconciliation {} {}: failed, no report written: {}", request.channel_id,
                  request.date, error);
    return false;
  }
  std::map<std::string, uint64_t> differences;
  std::string counts;
  for (size_t i = 0; i < reconciliation::class_count; ++i) {
    auto what = static_cast<reconciliation::line_class>(i);
    auto name = std::string{reconciliation::to_string(what)};
    if (what != reconciliation::line_class::matched)
      differences[name] = summary.counts.by_class[i];
    counts += (counts.empty() ? "" : ", ") + name + " "
              + std::to_string(summary.counts.by_class[i]);
  }
  st.figures->count_reconciliation(request.channel_id, summary.counts.lines, differences,
                                   summary.finished_at_ms);
  spdlog::info("reconciliation {} {}: {} lines in {} ms: {}; report {}", request.channel_id,
               request.date, summary.counts.lines, summary.finished_at_ms - summary.started_at_ms,
               counts, summary.report_path);
  return true;
}

/// The daily run: the previous UTC day, unless its report is there already.
void daily(reconciliation_pointer self) {
  auto& st = self->state;
  if (st.settings.daily_at.empty())
    return;
  auto now = unix_now_ms();
  auto date = utc_day(now - day_ms);
  int64_t next = until_next(st.settings.daily_at, now);
  if (st.settings.switches != nullptr
      && st.settings.switches->paused(degrade_switch::reconciliation)) {
    if (!reported(st, date)) {
      if (!st.said_paused)
        spdlog::info("reconciliation {} {}: the daily run waits while reconciliation is paused "
                     "(degrade reconciliation off resumes it)",
                     st.settings.source.channel_id, date);
      st.said_paused = true;
      next = std::min<int64_t>(next, 5'000);
    }
    self->delayed_send(self, std::chrono::milliseconds{next}, tick_atom::value);
    return;
  }
  st.said_paused = false;
  if (!reported(st, date)) {
    reconciliation::run_request request{st.settings.source.channel_id, date, "", true};
    reconciliation::run_summary summary;
    std::string error;
    if (run(self, request, summary, error)) {
      st.retry_ms = 60'000;
    } else {
      next = std::min(next, st.retry_ms);
      spdlog::warn("reconciliation {} {}: tried again in {} s", request.channel_id, date,
                   next / 1000);
      st.retry_ms = std::min<int64_t>(st.retry_ms * 2, 3'600'000);
    }
  }
  self->delayed_send(self, std::chrono::milliseconds{next}, tick_atom::value);
}

reconciliation_actor::behavior_type
reconciliation_behavior(reconciliation_pointer self, reconciliation_settings settings,
                        local_store* store, store_actor writer, metrics* figures) {
  name_this_thread("pb-reconcile");
  auto& st = self->state;
  st.settings = std::move(settings);
  st.store = store;
  st.writer = std::move(writer);
  st.figures = figures;
  if (!st.settings.daily_at.empty()) {
    // At start: the previous day at once if its time has passed without a
    // report (the bus was down then), else at the time.
    auto now = unix_now_ms();
    int64_t first = until_next(st.settings.daily_at, now);
    if (first >= until_next("00:00", now) && !reported(st, utc_day(now - day_ms)))
      first = 5'000;
    self->delayed_send(self, std::chrono::milliseconds{first}, tick_atom::value);
  }
  return {
    [=](reconcile_atom, const std::string& date, const std::string& file,
        bool repair) -> std::tuple<bool, std::string> {
      reconciliation::run_request request{self->state.settings.source.channel_id, date, file,
                                          repair};
      reconciliation::run_summary summary;
      std::string error;
      if (!run(self, request, summary, error))
        return {false, error};
      return {true, reconciliation::summary_json(summary)};
    },
    [=](tick_atom) { daily(self); },
  };
}

}  // namespace

reconciliation_actor spawn_reconciliation(caf::actor_system& system,
                                          reconciliation_settings settings, local_store& store,
                                          store_actor writer, metrics& figures) {
  settings.source.bus_key = settings.bus_key.get();
  settings.source.channel_key = settings.channel_key.get();
  settings.source.stopping = settings.stopping.get();
  return system.spawn<caf::detached>(reconciliation_behavior, std::move(settings), &store,
                                     std::move(writer), &figures);
}

}  // namespace paybus
