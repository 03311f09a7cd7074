// Drives each accepted payment to a final result: route (durably recorded
// before sending), pay, and on anything but a final answer, query the same
// channel; reroute only what a channel says it never took.

#include <map>
#include <random>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/payment_rules.hpp"
#include "actors/spawn.hpp"
#include "common/clock.hpp"
#include "common/metrics.hpp"

namespace paybus {

namespace {

constexpr int64_t tick_ms = 100;
constexpr int64_t route_retry_ms = 1000;

enum class stage { route, query, busy, waiting_result };

struct driven_payment {
  payment_record record;
  std::set<std::string> excluded;  // channels that said they never took it
  std::string channel;             // where it was sent (durably recorded)
  stage next = stage::route;
  int64_t due_ms = 0;
  int queries = 0;
};

struct coordinator_state {
  store_actor store;
  std::vector<coordinator_channel> channels;
  metrics* figures = nullptr;
  rule_timing timing;
  std::map<std::string, driven_payment> payments;
  std::mt19937_64 rng{std::random_device{}()};
};

using coordinator_pointer = coordinator_actor::stateful_pointer<coordinator_state>;

channel_actor* find_channel(coordinator_state& st, const std::string& id) {
  for (auto& channel : st.channels)
    if (channel.id == id)
      return &channel.handle;
  return nullptr;
}

bool expired(const payment_record& record) {
  return unix_now_ms() > record.created_at_ms + record.order.expire_seconds * 1000;
}

void forget(coordinator_pointer self, const std::string& pay_id) {
  self->state.payments.erase(pay_id);
  self->state.figures->payments_driving = static_cast<int64_t>(self->state.payments.size());
}

void record_result(coordinator_pointer self, const std::string& pay_id,
                   const std::string& status, const channel_outcome& outcome,
                   const std::string& source) {
  auto& st = self->state;
  auto found = st.payments.find(pay_id);
  if (found == st.payments.end())
    return;
  auto& payment = found->second;
  payment.next = stage::busy;
  payment_result result;
  result.pay_id = pay_id;
  result.status = status;
  result.channel_id = payment.channel;
  result.channel_txn_id = outcome.channel_txn_id;
  result.amount_minor = payment.record.order.amount_minor;  // the channel answered for this order
  result.finished_at_ms = unix_now_ms();
  result.source = source;
  self->request(st.store, caf::infinite, result_atom::value, result)
    .then(
      [=](result_recorded& recorded) {
        if (recorded.result.flagged)
          spdlog::warn("payment {}: result kept but flagged (amount differs)", pay_id);
        forget(self, pay_id);
      },
      [=](caf::error&) {
        // The store cannot write: try again later; the outcome is known.
        auto found = self->state.payments.find(pay_id);
        if (found != self->state.payments.end()) {
          found->second.next = stage::query;
          found->second.due_ms = monotonic_now_ms() + route_retry_ms;
        }
      });
}

void apply(coordinator_pointer self, const std::string& pay_id, const decision& next,
           const channel_outcome& outcome, const std::string& source) {
  auto& st = self->state;
  auto found = st.payments.find(pay_id);
  if (found == st.payments.end())
    return;
  auto& payment = found->second;
  switch (next.step) {
    case next_step::record_result:
      record_result(self, pay_id, next.result_status, outcome, source);
      break;
    case next_step::query_later:
      payment.next = stage::query;
      payment.due_ms = monotonic_now_ms() + next.delay_ms;
      break;
    case next_step::reroute:
      payment.excluded.insert(outcome.channel_id);
      payment.next = stage::route;
      payment.due_ms = monotonic_now_ms();
      break;
    case next_step::route_later:
      payment.next = stage::route;
      payment.due_ms = monotonic_now_ms() + next.delay_ms;
      break;
  }
}

void send_pay(coordinator_pointer self, const std::string& pay_id) {
  auto& st = self->state;
  auto& payment = st.payments.at(pay_id);
  auto* channel = find_channel(st, payment.channel);
  if (channel == nullptr) {
    payment.next = stage::route;
    payment.due_ms = monotonic_now_ms() + route_retry_ms;
    return;
  }
  self->request(*channel, caf::infinite, pay_atom::value, payment.record)
    .then(
      [=](channel_outcome& outcome) {
        apply(self, pay_id, after_pay(outcome, self->state.timing), outcome, "channel");
      },
      [=](caf::error&) {
        channel_outcome unknown{pay_id, "", "UNKNOWN", "", "channel actor failed"};
        apply(self, pay_id, after_pay(unknown, self->state.timing), unknown, "channel");
      });
}

void route(coordinator_pointer self, driven_payment& payment) {
  auto& st = self->state;
  std::vector<route_candidate> candidates;
  for (const auto& channel : st.channels)
    candidates.push_back({channel.id, channel.weight, true});
  double draw = std::uniform_real_distribution<double>{0, 1}(st.rng);
  auto chosen = choose_channel(candidates, payment.record.order.channel_id, payment.excluded, draw);
  if (!chosen) {
    if (expired(payment.record)) {
      channel_outcome none{payment.record.pay_id, "", "NOT_FOUND", "", "never taken"};
      record_result(self, payment.record.pay_id, payment_status::closed, none, "query");
      return;
    }
    // Everything refused or unavailable: start over after a while.
    payment.excluded.clear();
    payment.next = stage::route;
    payment.due_ms = monotonic_now_ms() + route_retry_ms;
    return;
  }
  payment.next = stage::busy;
  auto pay_id = payment.record.pay_id;
  auto channel_id = *chosen;
  // Durable before the channel hears of it: after a crash we ask this channel first.
  self->request(st.store, caf::infinite, route_atom::value, payment_routed{pay_id, channel_id})
    .then(
      [=](bool recorded) {
        auto found = self->state.payments.find(pay_id);
        if (found == self->state.payments.end())
          return;
        if (!recorded) {  // final already
          forget(self, pay_id);
          return;
        }
        found->second.channel = channel_id;
        found->second.record.routed_channel = channel_id;
        found->second.queries = 0;
        send_pay(self, pay_id);
      },
      [=](caf::error&) {
        auto found = self->state.payments.find(pay_id);
        if (found != self->state.payments.end()) {
          found->second.next = stage::route;
          found->second.due_ms = monotonic_now_ms() + route_retry_ms;
        }
      });
}

void query(coordinator_pointer self, driven_payment& payment) {
  auto& st = self->state;
  auto* channel = find_channel(st, payment.channel);
  if (channel == nullptr) {
    spdlog::error("payment {} was sent to channel {}, which is no longer configured",
                  payment.record.pay_id, payment.channel);
    payment.due_ms = monotonic_now_ms() + st.timing.max_query_ms;
    return;
  }
  payment.next = stage::busy;
  ++payment.queries;
  auto pay_id = payment.record.pay_id;
  self->request(*channel, caf::infinite, query_atom::value, pay_id)
    .then(
      [=](channel_outcome& outcome) {
        auto found = self->state.payments.find(pay_id);
        if (found == self->state.payments.end())
          return;
        apply(self, pay_id,
              after_query(outcome, found->second.queries, expired(found->second.record),
                          self->state.timing),
              outcome, "query");
      },
      [=](caf::error&) {
        channel_outcome unknown{pay_id, "", "UNKNOWN", "", "channel actor failed"};
        apply(self, pay_id, after_query(unknown, 1, false, self->state.timing), unknown, "query");
      });
}

void on_tick(coordinator_pointer self) {
  auto& st = self->state;
  auto now = monotonic_now_ms();
  std::vector<std::string> due;
  for (auto& [pay_id, payment] : st.payments)
    if (payment.next != stage::busy && payment.due_ms <= now)
      due.push_back(pay_id);
  for (const auto& pay_id : due) {
    auto found = st.payments.find(pay_id);
    if (found == st.payments.end())
      continue;
    if (found->second.next == stage::route)
      route(self, found->second);
    else if (found->second.next == stage::query)
      query(self, found->second);
  }
  self->delayed_send(self, std::chrono::milliseconds{tick_ms}, tick_atom::value);
}

coordinator_actor::behavior_type coordinator_behavior(coordinator_pointer self,
                                                      store_actor store,
                                                      std::vector<coordinator_channel> channels,
                                                      metrics* figures) {
  auto& st = self->state;
  st.store = std::move(store);
  st.channels = std::move(channels);
  st.figures = figures;
  self->delayed_send(self, std::chrono::milliseconds{tick_ms}, tick_atom::value);
  return {
    [=](std::vector<payment_record>& records) {
      auto& st = self->state;
      for (auto& record : records) {
        if (is_final_status(record.status) || st.payments.count(record.pay_id))
          continue;
        driven_payment payment;
        payment.channel = record.routed_channel;
        // Sent somewhere before a restart: ask there before anything else.
        payment.next = payment.channel.empty() ? stage::route : stage::query;
        auto pay_id = record.pay_id;
        payment.record = std::move(record);
        auto& placed = st.payments.emplace(pay_id, std::move(payment)).first->second;
        if (placed.next == stage::route)
          route(self, placed);
        else
          query(self, placed);
      }
      st.figures->payments_driving = static_cast<int64_t>(st.payments.size());
    },
    [=](settled_atom, const std::string& pay_id) {
      auto found = self->state.payments.find(pay_id);
      if (found != self->state.payments.end() && found->second.next != stage::busy)
        forget(self, pay_id);
      else if (found != self->state.payments.end())
        found->second.due_ms = 0;  // its in-flight answer will find it final
    },
    [=](tick_atom) { on_tick(self); },
  };
}

} // namespace

coordinator_actor spawn_coordinator(caf::actor_system& system, store_actor store,
                                    std::vector<coordinator_channel> channels,
                                    metrics& figures) {
  return system.spawn(coordinator_behavior, std::move(store), std::move(channels), &figures);
}

} // namespace paybus
