// Drives each accepted payment to a final result: route (durably recorded
// before sending), pay, and on anything but a final answer, query the same
// channel; reroute only what a channel says it never took. Payments wait in
// a queue until a channel has a free slot, so a busy channel is never
// flooded with requests it would refuse.

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/payment/payment_rules.hpp"
#include "actors/payment/coordinator.hpp"
#include "common/clock.hpp"
#include "common/metrics.hpp"

namespace paybus {

namespace {

constexpr int64_t tick_ms = 50;
// No request of the coordinator waits forever. Each one's error handler is
// the safe way on: a result or a route not written is tried again; a pay
// request or query with no answer is an UNKNOWN outcome (asked again, never
// sent elsewhere); a read not answered is read again at the next tick.
constexpr auto store_timeout = std::chrono::seconds{30};
constexpr auto channel_timeout = std::chrono::seconds{60};  // beyond the channel's own
constexpr auto reader_timeout = std::chrono::seconds{60};
constexpr int64_t route_retry_ms = 1000;
constexpr int64_t slot_retry_ms = 20;

enum class stage { route, query, busy };

struct driven_payment {
  payment_record record;
  std::set<std::string> excluded;  // channels that said they never took it
  std::string channel;             // where it was sent (durably recorded)
  stage next = stage::route;
  int queries = 0;
  // When its last pay request left (monotonic ms); for a payment this run has
  // not sent, when the coordinator started: an earlier run may have sent it
  // just before it stopped.
  int64_t sent_ms = 0;
};

struct channel_slots {
  coordinator_channel channel;
  size_t in_flight = 0;
};

struct coordinator_state {
  store_actor store;
  reader_actor reader;
  size_t max_in_memory = 50'000;
  // Unfinished payments not in memory may exist in the store from this
  // pay_id on (left at a stop, or turned away while memory was full).
  bool more_in_store = true;
  std::string in_store_from;
  bool loading = false;
  std::vector<channel_slots> channels;
  metrics* figures = nullptr;
  rule_timing timing;
  int64_t started_ms = 0;
  // By pay_id, hashed: nothing needs them in order, and a look-up should not
  // grow with a backlog (up to max_in_memory after an outage).
  std::unordered_map<std::string, driven_payment> payments;
  std::deque<std::string> route_queue;             // waiting for a channel slot
  std::multimap<int64_t, std::string> timers;      // due (monotonic ms) -> pay_id
  std::mt19937_64 rng{std::random_device{}()};
};

using coordinator_pointer = coordinator_actor::stateful_pointer<coordinator_state>;

channel_slots* find_channel(coordinator_state& st, const std::string& id) {
  for (auto& slots : st.channels)
    if (slots.channel.id == id)
      return &slots;
  return nullptr;
}

bool has_slot(const channel_slots& slots) {
  return slots.in_flight < slots.channel.max_in_flight;
}

bool expired(const payment_record& record) {
  return unix_now_ms() > record.created_at_ms + record.order.expire_seconds * 1000;
}

void forget(coordinator_pointer self, const std::string& pay_id) {
  self->state.payments.erase(pay_id);
  self->state.figures->payments_driving = static_cast<int64_t>(self->state.payments.size());
}

void later(coordinator_pointer self, const std::string& pay_id, stage next, int64_t delay_ms) {
  auto& st = self->state;
  auto found = st.payments.find(pay_id);
  if (found == st.payments.end())
    return;
  found->second.next = next;
  st.timers.emplace(monotonic_now_ms() + delay_ms, pay_id);
}

void pump(coordinator_pointer self);

void release(coordinator_pointer self, const std::string& channel_id) {
  if (auto* slots = find_channel(self->state, channel_id); slots && slots->in_flight > 0)
    --slots->in_flight;
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
  self->request(st.store, store_timeout, result_atom::value, result)
    .then(
      [=](result_recorded& recorded) {
        if (recorded.result.flagged)
          spdlog::warn("payment {}: result kept but flagged (amount differs)", pay_id);
        forget(self, pay_id);
      },
      [=](caf::error&) {
        // The store cannot write: try again later. What a channel said, it
        // will say again when asked; a payment closed without one is routed
        // again, which closes it again.
        later(self, pay_id, outcome.channel_id.empty() ? stage::route : stage::query,
              route_retry_ms);
      });
}

void apply(coordinator_pointer self, const std::string& pay_id, const decision& next,
           const channel_outcome& outcome, const std::string& source) {
  auto& st = self->state;
  auto found = st.payments.find(pay_id);
  if (found == st.payments.end())
    return;
  switch (next.step) {
    case next_step::record_result:
      record_result(self, pay_id, next.result_status, outcome, source);
      break;
    case next_step::query_later:
      later(self, pay_id, stage::query, next.delay_ms);
      break;
    case next_step::reroute:
      found->second.excluded.insert(outcome.channel_id);
      found->second.next = stage::route;
      st.route_queue.push_back(pay_id);
      break;
    case next_step::route_later:
      later(self, pay_id, stage::route, next.delay_ms);
      break;
  }
}

void send_pay(coordinator_pointer self, const std::string& pay_id, const std::string& channel_id) {
  auto& st = self->state;
  auto* slots = find_channel(st, channel_id);
  auto& payment = st.payments.at(pay_id);
  payment.sent_ms = monotonic_now_ms();
  self->request(slots->channel.handle, channel_timeout, pay_atom::value, payment.record)
    .then(
      [=](channel_outcome& outcome) {
        release(self, channel_id);
        apply(self, pay_id, after_pay(outcome, self->state.timing), outcome, "channel");
        pump(self);
      },
      [=](caf::error&) {
        release(self, channel_id);
        channel_outcome unknown{pay_id, channel_id, "UNKNOWN", "", "channel actor failed"};
        apply(self, pay_id, after_pay(unknown, self->state.timing), unknown, "channel");
        pump(self);
      });
}

/// Sends `pay_id` to `channel_id`, recording the route first unless the store
/// already holds it (a payment the same channel refused earlier: not sent).
void start_payment(coordinator_pointer self, driven_payment& payment, const std::string& channel_id) {
  auto& st = self->state;
  payment.next = stage::busy;
  ++find_channel(st, channel_id)->in_flight;
  auto pay_id = payment.record.pay_id;
  if (payment.channel == channel_id) {
    send_pay(self, pay_id, channel_id);
    return;
  }
  // Durable before the channel hears of it: after a crash we ask this channel first.
  self->request(st.store, store_timeout, route_atom::value, payment_routed{pay_id, channel_id})
    .then(
      [=](bool recorded) {
        auto found = self->state.payments.find(pay_id);
        if (found == self->state.payments.end() || !recorded) {  // final already
          release(self, channel_id);
          forget(self, pay_id);
          pump(self);
          return;
        }
        found->second.channel = channel_id;
        found->second.record.routed_channel = channel_id;
        found->second.queries = 0;
        send_pay(self, pay_id, channel_id);
      },
      [=](caf::error&) {
        release(self, channel_id);
        later(self, pay_id, stage::route, route_retry_ms);
      });
}

/// Routes queued payments while channels have free slots.
void pump(coordinator_pointer self) {
  auto& st = self->state;
  while (!st.route_queue.empty()) {
    bool any_slot = false;
    std::vector<route_candidate> candidates;
    for (const auto& slots : st.channels) {
      candidates.push_back({slots.channel.id, slots.channel.weight, has_slot(slots)});
      any_slot = any_slot || has_slot(slots);
    }
    if (!any_slot)
      return;  // a finishing request pumps again
    auto pay_id = st.route_queue.front();
    st.route_queue.pop_front();
    auto found = st.payments.find(pay_id);
    if (found == st.payments.end() || found->second.next != stage::route)
      continue;
    auto& payment = found->second;
    if (expired(payment.record)) {
      // No channel holds it (it is being routed): its time is up, so it is
      // closed, never sent, however free the channels are.
      channel_outcome none{pay_id, "", "NOT_FOUND", "", "never taken"};
      record_result(self, pay_id, payment_status::closed, none, "query");
      continue;
    }
    std::optional<std::string> chosen;
    auto* recorded = payment.channel.empty() ? nullptr : find_channel(st, payment.channel);
    if (recorded != nullptr && has_slot(*recorded) && !payment.excluded.count(payment.channel)) {
      chosen = payment.channel;  // where the store already says it goes
    } else {
      double draw = std::uniform_real_distribution<double>{0, 1}(st.rng);
      chosen = choose_channel(candidates, payment.record.order.channel_id, payment.excluded, draw);
    }
    if (chosen) {
      start_payment(self, payment, *chosen);
      continue;
    }
    // Its channels are busy, or all refused: try again shortly / after a while.
    bool refused_everywhere = !payment.excluded.empty();
    payment.excluded.clear();
    later(self, pay_id, stage::route, refused_everywhere ? route_retry_ms : slot_retry_ms);
  }
}

void query(coordinator_pointer self, driven_payment& payment) {
  auto& st = self->state;
  auto pay_id = payment.record.pay_id;
  auto* slots = find_channel(st, payment.channel);
  if (slots == nullptr) {
    spdlog::error("payment {} was sent to channel {}, which is no longer configured", pay_id,
                  payment.channel);
    later(self, pay_id, stage::query, st.timing.max_query_ms);
    return;
  }
  if (!has_slot(*slots)) {
    later(self, pay_id, stage::query, slot_retry_ms);
    return;
  }
  payment.next = stage::busy;
  ++payment.queries;
  ++slots->in_flight;
  auto channel_id = payment.channel;
  // A NOT_FOUND to a question asked before the channel's settle time may only
  // mean that the pay request still waits in its queues (docs/architecture.md).
  auto asked_ms = monotonic_now_ms();
  auto settled_ms = payment.sent_ms + slots->channel.settle_ms;
  self->request(slots->channel.handle, channel_timeout, query_atom::value, pay_id)
    .then(
      [=](channel_outcome& outcome) {
        release(self, channel_id);
        auto found = self->state.payments.find(pay_id);
        if (found != self->state.payments.end()) {
          int64_t unsettled = 0;
          if (asked_ms < settled_ms)
            unsettled = std::max<int64_t>(1, settled_ms - monotonic_now_ms());
          apply(self, pay_id,
                after_query(outcome, found->second.queries, expired(found->second.record),
                            self->state.timing, unsettled),
                outcome, "query");
        }
        pump(self);
      },
      [=](caf::error&) {
        release(self, channel_id);
        channel_outcome unknown{pay_id, channel_id, "UNKNOWN", "", "channel actor failed"};
        apply(self, pay_id, after_query(unknown, 1, false, self->state.timing, 0), unknown,
              "query");
        pump(self);
      });
}

void admit(coordinator_pointer self, std::vector<payment_record>& records, bool resumed);

/// Reads unfinished payments from the store while there is room.
void load_from_store(coordinator_pointer self) {
  auto& st = self->state;
  if (!st.more_in_store || st.loading || st.channels.empty()
      || st.payments.size() > st.max_in_memory / 2)
    return;
  st.loading = true;
  auto limit = static_cast<uint32_t>(st.max_in_memory / 2);
  auto from = st.in_store_from;
  self->request(st.reader, reader_timeout, resume_atom::value, from, limit)
    .then(
      [=](std::vector<payment_record>& records) {
        auto& st = self->state;
        st.loading = false;
        if (records.size() < limit) {
          st.more_in_store = false;
        } else {
          st.in_store_from = records.back().pay_id;
          st.in_store_from.push_back('\0');  // the next key after it
        }
        if (!records.empty())
          spdlog::info("driving {} unfinished payments read from the store", records.size());
        // Some may have been sent before a stop: those with a channel are asked first.
        admit(self, records, true);
      },
      [=](caf::error&) { self->state.loading = false; });
}

void on_tick(coordinator_pointer self) {
  auto& st = self->state;
  load_from_store(self);
  auto now = monotonic_now_ms();
  while (!st.timers.empty() && st.timers.begin()->first <= now) {
    auto pay_id = st.timers.begin()->second;
    st.timers.erase(st.timers.begin());
    auto found = st.payments.find(pay_id);
    if (found == st.payments.end())
      continue;
    if (found->second.next == stage::route)
      st.route_queue.push_back(pay_id);
    else if (found->second.next == stage::query)
      query(self, found->second);
  }
  pump(self);
  self->delayed_send(self, std::chrono::milliseconds{tick_ms}, tick_atom::value);
}

/// Takes payments to drive. New ones go to the channel chosen at acceptance
/// (recorded there, never sent); resumed ones with a channel are asked first.
void admit(coordinator_pointer self, std::vector<payment_record>& records, bool resumed) {
  auto& st = self->state;
  if (st.channels.empty())
    return;  // nothing to pay through: payments wait in the store
  for (auto& record : records) {
    if (is_final_status(record.status) || st.payments.count(record.pay_id))
      continue;
    if (st.payments.size() >= st.max_in_memory) {
      // Memory is full: it waits in the store's dispatch family.
      if (!st.more_in_store || record.pay_id < st.in_store_from)
        st.in_store_from = record.pay_id;
      st.more_in_store = true;
      continue;
    }
    driven_payment payment;
    payment.channel = record.routed_channel;
    payment.sent_ms = st.started_ms;
    auto pay_id = record.pay_id;
    payment.record = std::move(record);
    auto& placed = st.payments.emplace(pay_id, std::move(payment)).first->second;
    if (resumed && !placed.channel.empty()) {
      placed.next = stage::query;
      query(self, placed);
    } else {
      placed.next = stage::route;
      st.route_queue.push_back(pay_id);
    }
  }
  st.figures->payments_driving = static_cast<int64_t>(st.payments.size());
  pump(self);
}

coordinator_actor::behavior_type coordinator_behavior(coordinator_pointer self,
                                                      store_actor store, reader_actor reader,
                                                      std::vector<coordinator_channel> channels,
                                                      size_t max_in_memory, metrics* figures) {
  auto& st = self->state;
  st.store = std::move(store);
  st.reader = std::move(reader);
  st.max_in_memory = std::max<size_t>(2, max_in_memory);
  for (auto& channel : channels)
    st.channels.push_back({std::move(channel), 0});
  st.figures = figures;
  st.started_ms = monotonic_now_ms();
  self->delayed_send(self, std::chrono::milliseconds{tick_ms}, tick_atom::value);
  return {
    [=](std::vector<payment_record>& records) { admit(self, records, false); },
    [=](resume_atom, std::vector<payment_record>& records) { admit(self, records, true); },
    [=](settled_atom, const std::string& pay_id) {
      auto found = self->state.payments.find(pay_id);
      if (found != self->state.payments.end() && found->second.next != stage::busy)
        forget(self, pay_id);
      // If busy, its in-flight answer finds the payment final in the store.
    },
    [=](tick_atom) { on_tick(self); },
  };
}

} // namespace

coordinator_actor spawn_coordinator(caf::actor_system& system, store_actor store,
                                    reader_actor reader,
                                    std::vector<coordinator_channel> channels,
                                    size_t max_in_memory, metrics& figures) {
  return system.spawn(coordinator_behavior, std::move(store), std::move(reader),
                      std::move(channels), max_in_memory, &figures);
}

} // namespace paybus
