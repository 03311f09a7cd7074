// Merchant notifications (API.md section 5): read due entries of the store's
// webhook outbox, a queue a merchant, hand each to the webhook sender (at
// most notify.workers in flight, at most one fewer for any merchant, free
// slots first to the merchants with the fewest in flight, so merchants whose
// endpoints hang, however many of their webhooks are due, never hold up the
// others), drop on any 2xx, otherwise retry later on a doubling schedule,
// for at least 24 hours, across restarts.

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/common/round_timer.hpp"
#include "actors/webhook/notifier.hpp"
#include "actors/webhook/webhook_plan.hpp"
#include "actors/webhook/webhook_sender.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/live_switches.hpp"
#include "common/metrics.hpp"
#include "common/thread_name.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

namespace {

struct notifier_state {
  local_store* store = nullptr;  // read only: the writer applies every outcome
  metrics* figures = nullptr;
  store_actor writer;
  notifier_settings settings;
  webhook_retry_policy retry;
  std::map<std::string, notify_merchant> merchants;
  std::unique_ptr<webhook_sender> sender;
  size_t capacity = 1;  // deliveries in flight at once (notify.workers)
  uint64_t next_delivery = 0;
  std::unordered_map<uint64_t, webhook_entry> sending;  // by delivery id
  // Entries in flight or whose outcome the writer has not made durable yet:
  // still at the head of their queue, skipped by the reads. Per merchant,
  // at most one fewer than the capacity: a merchant whose endpoint hangs
  // never holds every slot.
  std::set<std::string> held;  // event ids
  std::map<std::string, size_t> merchant_held;
  std::vector<webhook_update> unsent;  // outcomes the writer could not take yet
  webhook_cursor cursor;
  round_timer timer;
};

using notifier_pointer = notifier_actor::stateful_pointer<notifier_state>;

void schedule(notifier_pointer self, int64_t delay_ms) {
  self->state.timer.schedule(self, delay_ms);
}

void release(notifier_state& st, const webhook_update& update) {
  st.held.erase(update.event_id);
  if (auto found = st.merchant_held.find(update.merchant_id);
      found != st.merchant_held.end() && --found->second == 0)
    st.merchant_held.erase(found);
}

/// Has the writer apply `updates`; each entry stays held until it is durable
/// (or, should the writer fail, is handed back again at the next round).
void hand_back(notifier_pointer self, std::vector<webhook_update> updates) {
  constexpr auto writer_timeout = std::chrono::seconds{30};
  self->request(self->state.writer, writer_timeout, webhook_atom::value, updates)
    .then(
      [=](bool) {
        auto& st = self->state;
        for (const auto& update : updates)
          release(st, update);
        st.figures->notify_backlog = st.store->webhook_backlog();
      },
      [=](caf::error& error) {
        auto& st = self->state;
        spdlog::warn("webhook outbox: the store writer did not take {} outcomes ({}); "
                     "handed back again at the next round",
                     updates.size(), self->system().render(error));
        st.unsent.insert(st.unsent.end(), updates.begin(), updates.end());
      });
}

webhook_update update_of(const webhook_entry& entry, int64_t next_due_ms) {
  return {entry.merchant_id,  entry.event_id, entry.pay_id, entry.attempt,
          entry.first_due_ms, entry.due_ms,   next_due_ms};
}

/// The notification body, from the payment as the store holds it now; or
/// nothing, with `error` saying why, if the payment cannot be read (a failed
/// read, or, against the store's invariant, no order): not read is not
/// absent, so the entry stays.
std::optional<webhook_delivery> build(notifier_state& st, const webhook_entry& entry,
                                      std::string& error) {
  std::optional<payment_record> record;
  auto status = st.store->get(entry.pay_id, record);
  if (!status.ok() || !record) {
    error = status.ok() ? "the store holds no order for it" : status.ToString();
    return std::nullopt;
  }
  auto merchant = st.merchants.find(record->order.merchant_id);
  webhook_delivery delivery;
  delivery.event_id = entry.event_id;
  delivery.merchant_id = record->order.merchant_id;
  delivery.url = !record->order.notify_url.empty() ? record->order.notify_url
                 : merchant != st.merchants.end()  ? merchant->second.default_url
                                                   : std::string{};
  std::string type = record->status == payment_status::succeeded ? "payment.succeeded"
                     : record->status == payment_status::failed  ? "payment.failed"
                                                                 : "payment.closed";
  nlohmann::json body{{"event_id", entry.event_id},
                      {"type", type},
                      {"pay_id", record->pay_id},
                      {"merchant_order_no", record->order.merchant_order_no},
                      {"amount", record->order.amount_minor},
                      {"currency", record->order.currency},
                      {"status", record->status},
                      {"finished_at", format_rfc3339_ms(record->finished_at_ms)}};
  delivery.body = body.dump();
  return delivery;
}

/// Delivery `id` got `http_status` (0: no answer).
void finished(notifier_pointer self, uint64_t id, int32_t http_status) {
  auto& st = self->state;
  auto found = st.sending.find(id);
  if (found == st.sending.end())
    return;
  auto entry = std::move(found->second);
  st.sending.erase(found);
  auto plan = plan_after_attempt(http_status, entry.attempt, entry.first_due_ms, unix_now_ms(),
                                 st.retry);
  switch (plan.outcome) {
    case attempt_outcome::delivered:
      ++st.figures->webhooks_delivered_total;
      break;
    case attempt_outcome::given_up:
      spdlog::error("webhook {} for payment {}: giving up after {} attempts", entry.event_id,
                    entry.pay_id, entry.attempt + 1);
      ++st.figures->webhooks_given_up_total;
      break;
    case attempt_outcome::retried:
      ++st.figures->webhooks_retried_total;
      break;
  }
  hand_back(self, {update_of(entry, plan.next_due_ms)});
  // A slot is free: the next due webhook need not wait for the poll (unless
  // a round is due at once anyway).
  if (!st.timer.pending() || st.timer.pending_delay_ms() > 0)
    st.timer.replace(self, 0);
}

void round(notifier_pointer self) {
  auto& st = self->state;
  if (st.settings.switches != nullptr && st.settings.switches->paused(degrade_switch::webhooks)) {
    if (!st.unsent.empty())
      hand_back(self, std::exchange(st.unsent, {}));
    st.figures->notify_backlog = st.store->webhook_backlog();
    schedule(self, st.settings.poll_ms);
    return;
  }
  if (!st.unsent.empty())
    hand_back(self, std::exchange(st.unsent, {}));
  auto now = unix_now_ms();
  size_t per_merchant = std::max<size_t>(1, st.capacity - 1);
  size_t idle_slots = st.capacity - std::min(st.capacity, st.sending.size());
  auto room = [&](const std::string& merchant_id) -> size_t {
    auto found = st.merchant_held.find(merchant_id);
    return webhook_room(found == st.merchant_held.end() ? 0 : found->second, per_merchant,
                        idle_slots);
  };
  std::vector<webhook_entry> due;
  std::optional<int64_t> next_due;
  auto status = st.store->due_webhooks(now, monotonic_now_ms(), room, st.cursor, due, next_due);
  if (!status.ok())
    spdlog::error("cannot read the webhook outbox: {}", status.ToString());
  std::vector<std::string> due_merchants;
  std::vector<bool> skip;
  for (const auto& entry : due) {
    due_merchants.push_back(entry.merchant_id);
    skip.push_back(st.held.count(entry.event_id) > 0);
  }
  std::vector<webhook_update> untargeted;
  for (auto i : plan_starts(due_merchants, skip, st.merchant_held, per_merchant, st.capacity,
                            st.sending.size())) {
    auto& entry = due[i];
    std::string error;
    auto delivery = build(st, entry, error);
    if (!delivery) {
      // Left where it is, not held: the next round reads it again.
      ++st.figures->webhooks_unreadable_total;
      spdlog::error("webhook {} for payment {}: cannot read the payment ({}); kept, and "
                    "read again at the next round",
                    entry.event_id, entry.pay_id, error);
      continue;
    }
    ++st.merchant_held[entry.merchant_id];
    st.held.insert(entry.event_id);
    if (delivery->url.empty()) {
      // No URL on the order and none configured for its merchant (any more):
      // it waits, and is looked at again, never dropped unseen.
      auto wait = update_of(entry, now + st.retry.untargeted_wait_ms);
      wait.attempted = false;
      untargeted.push_back(wait);
      ++st.figures->webhooks_untargeted_total;
      continue;
    }
    auto id = ++st.next_delivery;
    st.sending.emplace(id, entry);
    st.sender->send(id, std::move(*delivery));
  }
  if (!untargeted.empty()) {
    spdlog::warn("{} webhooks have no URL to go to (none on the order, none configured for "
                 "the merchant): they wait, and are looked at again in {} s; `paybus-replay "
                 "webhooks` lists them",
                 untargeted.size(), st.retry.untargeted_wait_ms / 1000);
    hand_back(self, std::move(untargeted));
  }
  st.figures->notify_backlog = st.store->webhook_backlog();
  int64_t next = st.settings.poll_ms * 5;
  if (next_due)
    next = std::clamp<int64_t>(*next_due - unix_now_ms(), st.settings.poll_ms, next);
  schedule(self, next);
}

notifier_actor::behavior_type notifier_behavior(notifier_pointer self, local_store* store,
                                                store_actor writer, notifier_settings settings,
                                                metrics* figures) {
  name_this_thread("pb-notify");
  auto& st = self->state;
  st.store = store;
  st.writer = std::move(writer);
  st.retry = {settings.retry_base_ms, settings.retry_max_ms, settings.give_up_after_ms,
              settings.untargeted_wait_ms};
  st.figures = figures;
  st.settings = settings;
  for (const auto& merchant : settings.merchants)
    st.merchants[merchant.id] = merchant;
  st.capacity = std::max<size_t>(1, settings.workers);
  // Statuses come back as messages to this actor, if it is still there.
  st.sender = std::make_unique<webhook_sender>(
    settings, [address = self->address()](uint64_t id, int32_t http_status) {
      if (auto strong = caf::actor_cast<caf::strong_actor_ptr>(address))
        caf::anon_send(caf::actor_cast<notifier_actor>(strong), done_atom::value, id, http_status);
    });
  schedule(self, 0);
  return {
    [=](std::vector<webhook_queued>& queued) {
      for (const auto& put : queued)
        self->state.cursor.note_put(put.merchant_id, put.due_ms);
      schedule(self, 0);  // unless a round is coming anyway
    },
    [=](done_atom, uint64_t id, int32_t http_status) { finished(self, id, http_status); },
    [=](tick_atom, uint64_t generation) {
      if (self->state.timer.take(generation))
        round(self);
    },
  };
}

}  // namespace

notifier_actor spawn_notifier(caf::actor_system& system, local_store& store, store_actor writer,
                              notifier_settings settings, metrics& figures) {
  // Detached: its rounds read RocksDB, which must not hold up the
  // coordinator and the channel actors on CAF's scheduler.
  return system.spawn<caf::detached>(notifier_behavior, &store, std::move(writer),
                                     std::move(settings), &figures);
}

}  // namespace paybus
