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

#include "actors/webhook/webhook_plan.hpp"
#include "actors/common/round_timer.hpp"
#include "actors/webhook/notifier.hpp"
#include "actors/webhook/webhook_sender.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/metrics.hpp"
#include "common/thread_name.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

namespace {

struct notifier_state {
  local_store* store = nullptr;
  metrics* figures = nullptr;
  notifier_settings settings;
  std::map<std::string, notify_merchant> merchants;
  std::unique_ptr<webhook_sender> sender;
  size_t capacity = 1;  // deliveries in flight at once (notify.workers)
  uint64_t next_delivery = 0;
  std::unordered_map<uint64_t, webhook_entry> sending;  // by delivery id
  std::set<std::string> in_flight;  // event ids
  // Deliveries in flight per merchant, at most one fewer than the capacity:
  // a merchant whose endpoint hangs never holds every slot.
  std::map<std::string, size_t> merchant_in_flight;
  round_timer timer;
};

using notifier_pointer = notifier_actor::stateful_pointer<notifier_state>;

int64_t retry_delay(const notifier_settings& settings, int64_t attempt) {
  return webhook_retry_delay(attempt, settings.retry_base_ms, settings.retry_max_ms);
}

void schedule(notifier_pointer self, int64_t delay_ms) {
  self->state.timer.schedule(self, delay_ms);
}

/// The notification body, from the payment as the store holds it now.
std::optional<webhook_delivery> build(notifier_state& st, const webhook_entry& entry) {
  std::optional<payment_record> record;
  auto status = st.store->get(entry.pay_id, record);
  if (!status.ok() || !record)
    return std::nullopt;
  auto merchant = st.merchants.find(record->order.merchant_id);
  webhook_delivery delivery;
  delivery.event_id = entry.event_id;
  delivery.merchant_id = record->order.merchant_id;
  delivery.url = !record->order.notify_url.empty() ? record->order.notify_url
                 : merchant != st.merchants.end() ? merchant->second.default_url
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
  if (--st.merchant_in_flight[entry.merchant_id] == 0)
    st.merchant_in_flight.erase(entry.merchant_id);
  st.in_flight.erase(entry.event_id);
  if (http_status >= 200 && http_status < 300) {
    st.store->finish_webhook(entry);
    ++st.figures->webhooks_delivered_total;
  } else if (unix_now_ms() - entry.first_due_ms > st.settings.give_up_after_ms) {
    spdlog::error("webhook {} for payment {}: giving up after {} attempts", entry.event_id,
                  entry.pay_id, entry.attempt + 1);
    st.store->finish_webhook(entry);
    ++st.figures->webhooks_given_up_total;
  } else {
    st.store->reschedule_webhook(entry, unix_now_ms() + retry_delay(st.settings, entry.attempt));
    ++st.figures->webhooks_retried_total;
  }
  st.figures->notify_backlog = st.store->webhook_backlog();
  // A slot is free: the next due webhook need not wait for the poll (unless
  // a round is due at once anyway).
  if (!st.timer.pending() || st.timer.pending_delay_ms() > 0)
    st.timer.replace(self, 0);
}

void round(notifier_pointer self) {
  auto& st = self->state;
  auto now = unix_now_ms();
  size_t per_merchant = std::max<size_t>(1, st.capacity - 1);
  size_t idle_workers = st.capacity - std::min(st.capacity, st.sending.size());
  // Of each merchant's queue, what it may start now besides what it has in
  // flight, which is still at the head of its queue.
  auto room = [&](const std::string& merchant_id) -> size_t {
    auto found = st.merchant_in_flight.find(merchant_id);
    size_t busy = found == st.merchant_in_flight.end() ? 0 : found->second;
    return busy + std::min(busy < per_merchant ? per_merchant - busy : 0, idle_workers);
  };
  std::vector<webhook_entry> due;
  std::optional<int64_t> next_due;
  auto status = st.store->due_webhooks(now, room, due, next_due);
  if (!status.ok())
    spdlog::error("cannot read the webhook outbox: {}", status.ToString());
  // Idle workers go first to the merchants with the fewest deliveries in
  // flight, each merchant's webhooks oldest first. Merchants whose endpoints
  // hang fill the workers only while no other merchant has one due, and a
  // worker that frees goes to a merchant that has been waiting: however many
  // endpoints hang, none holds up the others for longer than an attempt.
  std::vector<std::pair<size_t, webhook_entry*>> order;
  std::map<std::string, size_t> level;  // in flight, then each one ordered
  for (auto& entry : due) {
    if (st.in_flight.count(entry.event_id))
      continue;
    auto [at, fresh] = level.emplace(entry.merchant_id, 0);
    if (auto busy = st.merchant_in_flight.find(entry.merchant_id);
        fresh && busy != st.merchant_in_flight.end())
      at->second = busy->second;
    order.emplace_back(at->second++, &entry);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (auto& [_, next] : order) {
    auto& entry = *next;
    if (st.sending.size() >= st.capacity)
      break;  // every slot busy: a finished delivery starts the next round
    auto merchant_id = entry.merchant_id;
    if (auto busy = st.merchant_in_flight.find(merchant_id);
        busy != st.merchant_in_flight.end() && busy->second >= per_merchant)
      continue;  // stays due: a later round takes it
    auto delivery = build(st, entry);
    if (!delivery || delivery->url.empty()) {
      // No payment (cannot happen) or no target configured: nothing to send.
      st.store->finish_webhook(entry);
      ++st.figures->webhooks_untargeted_total;
      continue;
    }
    auto id = ++st.next_delivery;
    ++st.merchant_in_flight[merchant_id];
    st.in_flight.insert(entry.event_id);
    st.sending.emplace(id, entry);
    st.sender->send(id, std::move(*delivery));
  }
  st.figures->notify_backlog = st.store->webhook_backlog();
  int64_t next = st.settings.poll_ms * 5;
  if (next_due)
    next = std::clamp<int64_t>(*next_due - unix_now_ms(), st.settings.poll_ms, next);
  schedule(self, next);
}

notifier_actor::behavior_type notifier_behavior(notifier_pointer self, local_store* store,
                                                notifier_settings settings, metrics* figures) {
  name_this_thread("pb-notify");
  auto& st = self->state;
  st.store = store;
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
    [=](wake_atom) { schedule(self, 0); },  // unless a round is coming anyway
    [=](done_atom, uint64_t id, int32_t http_status) { finished(self, id, http_status); },
    [=](tick_atom, uint64_t generation) {
      if (self->state.timer.take(generation))
        round(self);
    },
  };
}

} // namespace

notifier_actor spawn_notifier(caf::actor_system& system, local_store& store,
                              notifier_settings settings, metrics& figures) {
  // Detached: its rounds read RocksDB and its finished deliveries write it
  // (an unsynced write still waits in RocksDB's write group behind the store
  // writer's fdatasync), which must not hold up the coordinator and the
  // channel actors on CAF's scheduler.
  return system.spawn<caf::detached>(notifier_behavior, &store, std::move(settings), &figures);
}

} // namespace paybus
