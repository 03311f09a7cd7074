// Drives each accepted payment to a final result. The decisions are the
// pure payment_driver's (actors/payment/driver.hpp): this actor gives it
// every event with the time it happened and carries out the actions it
// returns (a route or a result to write, a channel to pay or ask, payments
// to read back from the store), feeding each answer back.

#include <chrono>
#include <random>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/payment/coordinator.hpp"
#include "actors/payment/driver.hpp"
#include "common/clock.hpp"
#include "common/live_switches.hpp"
#include "common/metrics.hpp"

namespace paybus {

namespace {

constexpr int64_t tick_ms = 50;
// No request of the coordinator waits unbounded. The requests for a payment
// (route, pay, query, result) carry no CAF timeout of their own: the driver
// keeps a deadline for each (driver_limits) and, on its tick, takes one
// that passed as failed the safe way (a pay request or query with no answer
// is UNKNOWN: asked again, never sent elsewhere; a write not answered is
// tried again), and ignores the answer should it still come. A CAF timeout
// is a clock-thread entry and a message a request: measured at 0.02 ms of
// CPU and 1.2 context switches a paid payment (docs/benchmarks.md). The rare
// read of unfinished payments has its own timeout.
constexpr auto reader_timeout = std::chrono::seconds{60};

struct coordinator_state {
  store_actor store;
  reader_actor reader;
  std::unordered_map<std::string, channel_actor> channels;
  std::unique_ptr<payment_driver> driver;
  metrics* figures = nullptr;
  switch_view switches;
};

using coordinator_pointer = coordinator_actor::stateful_pointer<coordinator_state>;

moment now() {
  return {monotonic_now_ms(), unix_now_ms()};
}

/// Hands the operator's switches to the driver when they changed.
void steer(coordinator_pointer self) {
  auto& st = self->state;
  if (!st.switches.refresh())
    return;
  std::vector<driver_channel> steered;
  for (const auto& channel : st.switches.state().channels) {
    driver_channel one;
    one.id = channel.id;
    one.weight = channel.weight;
    one.enabled = channel.enabled && !channel.breaker_forced;
    steered.push_back(std::move(one));
  }
  st.driver->steer(steered, st.switches.state().is_paused(degrade_switch::order_repair));
}

void carry_out(coordinator_pointer self, drive_actions actions);

void record_route(coordinator_pointer self, const drive_action& action) {
  auto pay_id = action.pay_id;
  auto op = action.op;
  self
    ->request(self->state.store, caf::infinite, route_atom::value,
              payment_routed{pay_id, action.channel_id})
    .then(
      [=](bool recorded) {
        carry_out(self, self->state.driver->route_recorded(pay_id, op, recorded, now()));
      },
      [=](caf::error&) { carry_out(self, self->state.driver->route_failed(pay_id, op, now())); });
}

void pay(coordinator_pointer self, const drive_action& action) {
  auto pay_id = action.pay_id;
  auto channel_id = action.channel_id;
  auto op = action.op;
  self->request(self->state.channels.at(channel_id), caf::infinite, pay_atom::value, action.record)
    .then(
      [=](channel_outcome& outcome) {
        carry_out(self, self->state.driver->paid(pay_id, op, outcome, now()));
      },
      [=](caf::error&) {
        channel_outcome unknown{pay_id, channel_id, channel_status::unknown, "",
                                "channel actor failed"};
        carry_out(self, self->state.driver->paid(pay_id, op, unknown, now()));
      });
}

void query(coordinator_pointer self, const drive_action& action) {
  auto pay_id = action.pay_id;
  auto op = action.op;
  self
    ->request(self->state.channels.at(action.channel_id), caf::infinite, query_atom::value, pay_id)
    .then(
      [=](channel_outcome& outcome) {
        carry_out(self, self->state.driver->queried(pay_id, op, outcome, now()));
      },
      [=](caf::error&) { carry_out(self, self->state.driver->query_failed(pay_id, op, now())); });
}

void record_result(coordinator_pointer self, const drive_action& action) {
  auto pay_id = action.pay_id;
  auto op = action.op;
  self->request(self->state.store, caf::infinite, result_atom::value, action.result)
    .then(
      [=](result_recorded& recorded) {
        if (recorded.result.flagged)
          spdlog::warn("payment {}: result kept but flagged (amount differs)", pay_id);
        self->state.driver->result_written(pay_id, op);
        self->state.figures->payments_driving = static_cast<int64_t>(self->state.driver->driving());
      },
      [=](caf::error&) { carry_out(self, self->state.driver->result_failed(pay_id, op, now())); });
}

void read_unfinished(coordinator_pointer self, const drive_action& action) {
  auto limit = action.limit;
  self->request(self->state.reader, reader_timeout, resume_atom::value, action.from, limit)
    .then(
      [=](std::vector<payment_record>& records) {
        if (!records.empty())
          spdlog::info("driving {} unfinished payments read from the store", records.size());
        carry_out(self, self->state.driver->unfinished_read(std::move(records), limit, now()));
      },
      [=](caf::error&) { self->state.driver->unfinished_failed(); });
}

void carry_out(coordinator_pointer self, drive_actions actions) {
  for (const auto& action : actions) {
    switch (action.what) {
      case drive_action::kind::record_route:
        record_route(self, action);
        break;
      case drive_action::kind::pay:
        pay(self, action);
        break;
      case drive_action::kind::query:
        query(self, action);
        break;
      case drive_action::kind::record_result:
        record_result(self, action);
        break;
      case drive_action::kind::read_unfinished:
        read_unfinished(self, action);
        break;
      case drive_action::kind::unknown_channel:
        spdlog::error("payment {} was sent to channel {}, which is no longer configured",
                      action.pay_id, action.channel_id);
        break;
      case drive_action::kind::record_held:
        // The store's answer is no news: the driver remembers it already.
        caf::anon_send(self->state.store, route_atom::value,
                       payment_routed{action.pay_id, action.channel_id, true});
        break;
      case drive_action::kind::contradiction:
        self->state.figures->channel_contradictions_total.fetch_add(1, std::memory_order_relaxed);
        spdlog::error("payment {}: channel {} answers NOT_FOUND for a payment it said it holds "
                      "(ACCEPTED); not believed: the payment stays with it and it is asked again, "
                      "never sent elsewhere or closed by that answer",
                      action.pay_id, action.channel_id);
        break;
    }
  }
  self->state.figures->payments_driving = static_cast<int64_t>(self->state.driver->driving());
}

coordinator_actor::behavior_type
coordinator_behavior(coordinator_pointer self, store_actor store, reader_actor reader,
                     std::vector<coordinator_channel> channels, size_t max_in_memory,
                     metrics* figures, const live_switches* switches) {
  auto& st = self->state;
  st.switches = switch_view{switches};
  st.store = std::move(store);
  st.reader = std::move(reader);
  st.figures = figures;
  std::vector<driver_channel> seen;
  for (auto& channel : channels) {
    seen.push_back({channel.id, channel.weight, channel.max_in_flight, channel.settle_ms});
    st.channels.emplace(channel.id, std::move(channel.handle));
  }
  st.driver = std::make_unique<payment_driver>(std::move(seen), max_in_memory, rule_timing{}, now(),
                                               std::random_device{}());
  steer(self);
  self->delayed_send(self, std::chrono::milliseconds{tick_ms}, tick_atom::value);
  return {
    [=](std::vector<payment_record>& records) {
      steer(self);
      carry_out(self, self->state.driver->admit(std::move(records), false, now()));
    },
    [=](resume_atom, std::vector<payment_record>& records) {
      carry_out(self, self->state.driver->admit(std::move(records), true, now()));
    },
    [=](settled_atom, const std::string& pay_id) {
      self->state.driver->settled(pay_id);
      self->state.figures->payments_driving = static_cast<int64_t>(self->state.driver->driving());
    },
    [=](tick_atom) {
      steer(self);
      carry_out(self, self->state.driver->tick(now()));
      self->delayed_send(self, std::chrono::milliseconds{tick_ms}, tick_atom::value);
    },
  };
}

}  // namespace

coordinator_actor spawn_coordinator(caf::actor_system& system, store_actor store,
                                    reader_actor reader, std::vector<coordinator_channel> channels,
                                    size_t max_in_memory, metrics& figures,
                                    const live_switches* switches) {
  return system.spawn(coordinator_behavior, std::move(store), std::move(reader),
                      std::move(channels), max_in_memory, &figures, switches);
}

}  // namespace paybus
