// Merchant notifications (API.md section 5): read due entries of the store's
// webhook outbox, a queue a merchant, deliver each through an idle worker,
// one delivery a worker and at most one worker fewer than there are for any
// merchant, idle workers first to the merchants with the fewest in flight
// (so merchants whose endpoints hang, however many of their webhooks are
// due, never hold up the others), drop on any 2xx, otherwise
// retry later on a doubling schedule, for at least 24 hours, across restarts.

#include <algorithm>
#include <map>
#include <set>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <curl/curl.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/payment_rules.hpp"
#include "actors/round_timer.hpp"
#include "actors/spawn.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/metrics.hpp"
#include "common/signing.hpp"
#include "common/thread_name.hpp"
#include "storage/local_store.hpp"

namespace paybus {

namespace {

std::string target_of(const std::string& url) {
  auto scheme = url.find("://");
  auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return slash == std::string::npos ? "/" : url.substr(slash);
}

struct worker_state {
  std::map<std::string, notify_merchant> merchants;
  crypto::pkey_ptr bus_key;
  int64_t timeout_ms = 5000;
  CURL* curl = nullptr;
  ~worker_state() {
    if (curl != nullptr)
      curl_easy_cleanup(curl);
  }
};

webhook_worker_actor::behavior_type worker_behavior(
  webhook_worker_actor::stateful_pointer<worker_state> self, notifier_settings settings) {
  name_this_thread("pb-webhook");
  auto& st = self->state;
  for (const auto& merchant : settings.merchants)
    st.merchants[merchant.id] = merchant;
  st.bus_key = settings.bus_key;
  st.timeout_ms = settings.timeout_ms;
  st.curl = curl_easy_init();
  return {
    [=](deliver_atom, const webhook_delivery& delivery) -> int32_t {
      auto& st = self->state;
      auto merchant = st.merchants.find(delivery.merchant_id);
      if (merchant == st.merchants.end())
        return 0;
      auto target = target_of(delivery.url);
      auto now = unix_now_ms();  // a fresh timestamp and nonce every attempt
      auto signature = merchant->second.rsa
                         ? sign_rsa(st.bus_key.get(), "POST", target, delivery.body, now)
                         : sign_hmac(merchant->second.secret, "POST", target, delivery.body, now);
      curl_slist* headers = nullptr;
      headers = curl_slist_append(headers, "Content-Type: application/json");
      headers = curl_slist_append(headers, "Expect:");
      headers = curl_slist_append(headers, ("X-Paybus-Merchant: " + delivery.merchant_id).c_str());
      headers = curl_slist_append(headers, ("X-Paybus-Timestamp: " + signature.timestamp).c_str());
      headers = curl_slist_append(headers, ("X-Paybus-Nonce: " + signature.nonce).c_str());
      headers = curl_slist_append(headers, ("X-Paybus-Signature: " + signature.signature).c_str());
      headers = curl_slist_append(headers, ("X-Paybus-Event: " + delivery.event_id).c_str());
      curl_easy_reset(st.curl);
      curl_easy_setopt(st.curl, CURLOPT_URL, delivery.url.c_str());
      curl_easy_setopt(st.curl, CURLOPT_HTTPHEADER, headers);
      curl_easy_setopt(st.curl, CURLOPT_POSTFIELDS, delivery.body.c_str());
      curl_easy_setopt(st.curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(delivery.body.size()));
      curl_easy_setopt(st.curl, CURLOPT_TIMEOUT_MS, static_cast<long>(st.timeout_ms));
      curl_easy_setopt(st.curl, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(st.curl, CURLOPT_PROTOCOLS_STR, "http,https");
      curl_easy_setopt(st.curl, CURLOPT_WRITEFUNCTION,
                       +[](char*, size_t size, size_t count, void*) { return size * count; });
      auto code = curl_easy_perform(st.curl);
      curl_slist_free_all(headers);
      long status = 0;
      if (code == CURLE_OK)
        curl_easy_getinfo(st.curl, CURLINFO_RESPONSE_CODE, &status);
      return static_cast<int32_t>(status);
    },
  };
}

struct notifier_state {
  local_store* store = nullptr;
  metrics* figures = nullptr;
  notifier_settings settings;
  std::map<std::string, notify_merchant> merchants;
  std::vector<webhook_worker_actor> workers;
  std::vector<bool> worker_busy;  // a worker takes one delivery at a time
  std::set<std::string> in_flight;  // event ids
  // Deliveries in flight per merchant, at most one worker fewer than there
  // are: a merchant whose endpoint hangs never holds every worker.
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

void round(notifier_pointer self) {
  auto& st = self->state;
  auto now = unix_now_ms();
  size_t per_merchant = std::max<size_t>(1, st.workers.size() - 1);
  size_t idle_workers
    = static_cast<size_t>(std::count(st.worker_busy.begin(), st.worker_busy.end(), false));
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
    auto idle = std::find(st.worker_busy.begin(), st.worker_busy.end(), false);
    if (idle == st.worker_busy.end())
      break;  // every worker busy: a finished delivery starts the next round
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
    auto worker = static_cast<size_t>(idle - st.worker_busy.begin());
    st.worker_busy[worker] = true;
    ++st.merchant_in_flight[merchant_id];
    st.in_flight.insert(entry.event_id);
    auto release = [=] {
      auto& st = self->state;
      st.worker_busy[worker] = false;
      if (--st.merchant_in_flight[merchant_id] == 0)
        st.merchant_in_flight.erase(merchant_id);
      st.in_flight.erase(entry.event_id);
    };
    self->request(st.workers[worker], caf::infinite, deliver_atom::value, *delivery)
      .then(
        [=](int32_t http_status) {
          release();
          auto& st = self->state;
          if (http_status >= 200 && http_status < 300) {
            st.store->finish_webhook(entry);
            ++st.figures->webhooks_delivered_total;
          } else if (unix_now_ms() - entry.first_due_ms > st.settings.give_up_after_ms) {
            spdlog::error("webhook {} for payment {}: giving up after {} attempts",
                          entry.event_id, entry.pay_id, entry.attempt + 1);
            st.store->finish_webhook(entry);
            ++st.figures->webhooks_given_up_total;
          } else {
            st.store->reschedule_webhook(entry, unix_now_ms() + retry_delay(st.settings, entry.attempt));
            ++st.figures->webhooks_retried_total;
          }
          st.figures->notify_backlog = st.store->webhook_backlog();
          // A worker is free: the next due webhook need not wait for the poll.
          self->state.timer.replace(self, 0);
        },
        [=](caf::error&) {
          release();
          // Not at once: the worker failed.
          self->state.timer.replace(self, self->state.settings.poll_ms);
        });
  }
  st.figures->notify_backlog = st.store->webhook_backlog();
  int64_t next = st.settings.poll_ms * 5;
  if (next_due)
    next = std::clamp<int64_t>(*next_due - unix_now_ms(), st.settings.poll_ms, next);
  schedule(self, next);
}

notifier_actor::behavior_type notifier_behavior(notifier_pointer self, local_store* store,
                                                notifier_settings settings, metrics* figures) {
  auto& st = self->state;
  st.store = store;
  st.figures = figures;
  st.settings = settings;
  for (const auto& merchant : settings.merchants)
    st.merchants[merchant.id] = merchant;
  for (size_t i = 0; i < std::max<size_t>(1, settings.workers); ++i) {
    st.workers.push_back(self->system().spawn<caf::detached>(worker_behavior, settings));
    self->link_to(st.workers.back());
  }
  st.worker_busy.assign(st.workers.size(), false);
  schedule(self, 0);
  return {
    [=](wake_atom) { schedule(self, 0); },  // unless a round is coming anyway
    [=](tick_atom, uint64_t generation) {
      if (self->state.timer.take(generation))
        round(self);
    },
  };
}

} // namespace

notifier_actor spawn_notifier(caf::actor_system& system, local_store& store,
                              notifier_settings settings, metrics& figures) {
  return system.spawn(notifier_behavior, &store, std::move(settings), &figures);
}

} // namespace paybus
