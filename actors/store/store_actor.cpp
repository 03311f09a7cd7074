#include <chrono>
#include <tuple>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/store/commit.hpp"
#include "actors/store/store_actor.hpp"
#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "common/thread_name.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

namespace {

/// Counts a payment that reached its final status.
void count_final(metrics& figures, payment_status status) {
  switch (status) {
    case payment_status::succeeded:
      figures.results_succeeded_total.fetch_add(1, std::memory_order_relaxed);
      break;
    case payment_status::failed:
      figures.results_failed_total.fetch_add(1, std::memory_order_relaxed);
      break;
    case payment_status::closed:
      figures.results_closed_total.fetch_add(1, std::memory_order_relaxed);
      break;
    case payment_status::processing:
      break;
  }
}

struct store_state {
  local_store* store = nullptr;
  metrics* figures = nullptr;
  sink_actor sink;                // woken when the outbox grows
  notifier_actor notifier;        // told which webhook queues were put to
  coordinator_actor coordinator;  // told which payments a result made final
  // At most one wake is owed to the sink: sent after a commit that grew the
  // outbox, owed until the sink says it begins a round (reading_atom); a
  // commit meanwhile is noted, and wakes it again then.
  bool sink_owed = false;
  bool sink_missed = false;
  store_actor_limits limits;
  settlement_policy policy;
  store_batch batch;
  // One promise per create request, answering creates [first, first + count).
  struct waiting_creates {
    caf::typed_response_promise<std::vector<order_stored>> promise;
    size_t first = 0;
    size_t count = 0;
  };
  std::vector<waiting_creates> create_promises;
  std::vector<caf::typed_response_promise<bool>> route_promises;
  std::vector<caf::typed_response_promise<result_recorded>> result_promises;
  std::vector<caf::typed_response_promise<bool>> webhook_promises;
  bool flush_queued = false;
  bool nonce_flush_queued = false;  // the nonces' delayed flush is on its way
  bool failing = false;
  std::chrono::steady_clock::time_point last_commit{};
};

using store_pointer = store_actor::stateful_pointer<store_state>;

size_t pending_writes(const store_state& st) {
  return st.batch.creates.size() + st.batch.routes.size() + st.batch.results.size()
         + st.batch.webhook_updates.size() + st.batch.delivered.size();
}

void wake_sink(store_pointer self) {
  auto& st = self->state;
  if (!st.sink)
    return;
  if (st.sink_owed) {
    st.sink_missed = true;
    return;
  }
  st.sink_owed = true;
  st.sink_missed = false;
  self->send(st.sink, wake_atom::value);
}

/// Commits everything queued as one synced batch and answers each requester.
void commit_pending(store_pointer self) {
  auto& st = self->state;
  st.flush_queued = false;
  if (pending_writes(st) == 0 && st.batch.nonces.empty())
    return;
  st.last_commit = std::chrono::steady_clock::now();
  store_batch_answers answers;
  auto status = commit(*st.store, st.batch, st.policy, unix_now_ms(), answers);
  if (!status.ok()) {
    st.figures->store_write_errors_total.fetch_add(1, std::memory_order_relaxed);
    if (!st.failing)
      spdlog::error("local store write failed: {}", status.ToString());
    st.failing = true;
    st.figures->store_up = 0;
    auto error = caf::make_error(errc::store_unavailable);
    for (auto& waiting : st.create_promises)
      waiting.promise.deliver(error);
    for (auto& promise : st.route_promises)
      promise.deliver(error);
    for (auto& promise : st.result_promises)
      promise.deliver(error);
    for (auto& promise : st.webhook_promises)
      promise.deliver(error);
  } else {
    if (st.failing)
      spdlog::info("local store writes again");
    st.failing = false;
    st.figures->store_up = 1;
    st.figures->store_batches_total.fetch_add(1, std::memory_order_relaxed);
    st.figures->store_batched_writes_total.fetch_add(
      st.batch.creates.size() + st.batch.routes.size() + st.batch.results.size(),
      std::memory_order_relaxed);
    st.figures->db_backlog = st.store->outbox_size();
    if (answers.flagged > 0) {
      st.figures->results_flagged_total.fetch_add(answers.flagged, std::memory_order_relaxed);
      spdlog::warn("{} payment results kept but not joined: their amount differs from the order's",
                   answers.flagged);
    }
    for (const auto& [what, kept, late] : answers.conflicts) {
      st.figures->results_conflicting_total.fetch_add(1, std::memory_order_relaxed);
      auto from = [](const std::string& channel) { return channel.empty() ? "-" : channel; };
      if (what == result_conflict::against::route) {
        spdlog::error(
          "payment {}: a {} result from {} ({}, transaction '{}', amount {}), a channel "
          "it is not routed to (it is routed to {}); kept in the conflicts family, "
          "not applied: that channel speaks for a payment it was not sent, or took it "
          "late after saying it had not",
          late.pay_id, to_string(late.status), from(late.channel_id), to_string(late.source),
          late.channel_txn_id, late.amount_minor, from(kept.channel_id));
        continue;
      }
      const char* kind = what == result_conflict::against::final_result     ? "final"
                         : what == result_conflict::against::flagged_result ? "flagged"
                                                                            : "waiting";
      const char* meaning
        = what == result_conflict::against::final_result
            ? "it may have been paid twice, or after it was closed"
          : what == result_conflict::against::flagged_result
            ? "which amount was paid is for people to settle"
            : "two answers for one pay_id before its order came: the first joins it when it "
              "comes, people must look at the second";
      spdlog::error("payment {}: a {} result from {} ({}, transaction '{}', amount {}) "
                    "contradicts the {} {} result kept from {} (transaction '{}', amount {}); "
                    "kept in the conflicts family, not applied: {}",
                    late.pay_id, to_string(late.status), from(late.channel_id),
                    to_string(late.source), late.channel_txn_id, late.amount_minor, kind,
                    to_string(kept.status), from(kept.channel_id), kept.channel_txn_id,
                    kept.amount_minor, meaning);
    }
    for (auto latency : answers.join_latencies_ms)
      st.figures->observe_join_latency(latency);
    for (const auto& recorded : answers.results)
      if (recorded.joined && recorded.changed)
        count_final(*st.figures, recorded.result.status);
    for (const auto& created : answers.creates)
      if (created.created && is_final_status(created.record.status))
        count_final(*st.figures, created.record.status);
    for (auto& waiting : st.create_promises) {
      std::vector<order_stored> answer;
      answer.reserve(waiting.count);
      for (size_t i = waiting.first; i < waiting.first + waiting.count; ++i)
        answer.push_back(std::move(answers.creates[i]));
      waiting.promise.deliver(std::move(answer));
    }
    for (size_t i = 0; i < st.route_promises.size(); ++i)
      st.route_promises[i].deliver(static_cast<bool>(answers.routes[i]));
    for (size_t i = 0; i < st.result_promises.size(); ++i)
      st.result_promises[i].deliver(std::move(answers.results[i]));
    for (auto& promise : st.webhook_promises)
      promise.deliver(true);
    if (answers.outbox_grew)
      wake_sink(self);
    if (st.notifier && !answers.webhooks_queued.empty())
      self->send(st.notifier, std::move(answers.webhooks_queued));
    // Results the coordinator wrote itself are no news to it: it hears of
    // the ones that came another way (a channel's notification).
    if (st.coordinator)
      for (const auto& recorded : answers.results)
        if (recorded.joined && recorded.changed && recorded.result.source != result_source::channel
            && recorded.result.source != result_source::query)
          self->send(st.coordinator, settled_atom::value, recorded.result.pay_id);
  }
  st.batch = store_batch{};
  st.create_promises.clear();
  st.route_promises.clear();
  st.result_promises.clear();
  st.webhook_promises.clear();
}

/// `webhook resend`: the payment's webhook queued again, due now (its
/// waiting entry, if any, moved to now; attempts so far kept). Applied at
/// once, after what is queued.
std::tuple<bool, std::string> resend_webhook(store_pointer self, const std::string& pay_id) {
  auto& st = self->state;
  commit_pending(self);
  std::optional<payment_record> record;
  auto status = st.store->get(pay_id, record);
  if (!status.ok())
    return {false, "the local store cannot be read: " + status.ToString()};
  if (!record)
    return {false, "no payment " + pay_id + " in the local store"};
  if (!is_final_status(record->status))
    return {false, "payment " + pay_id + " is " + to_string(record->status)
                     + ": its webhook goes once it is final"};
  if (!wants_webhook(st.policy, *record))
    return {false, "payment " + pay_id
                     + " has no webhook target (no notify_url on the order, "
                       "none configured for merchant "
                     + record->order.merchant_id + ")"};
  auto now = unix_now_ms();
  webhook_entry entry;
  entry.merchant_id = record->order.merchant_id;
  entry.event_id = "evt_" + pay_id;
  entry.pay_id = pay_id;
  entry.first_due_ms = now;
  std::optional<webhook_entry> waiting;
  status = st.store->find_webhook(entry.merchant_id, entry.event_id, waiting);
  if (!status.ok())
    return {false, "the local store cannot be read: " + status.ToString()};
  store_changes changes;
  if (waiting) {
    entry = *waiting;
    entry.due_ms = now;
    changes.webhook_moves.push_back({*waiting, entry});
  } else {
    entry.due_ms = now;
    changes.webhooks.push_back(entry);
  }
  status = st.store->apply(changes);
  if (!status.ok())
    return {false, "the local store cannot write: " + status.ToString()};
  if (st.notifier)
    self->send(st.notifier, std::vector<webhook_queued>{{entry.merchant_id, now}});
  st.figures->notify_backlog = st.store->webhook_backlog();
  return {true, entry.event_id};
}

void queue_flush(store_pointer self) {
  auto& st = self->state;
  if (pending_writes(st) >= st.limits.max_batch_writes) {
    commit_pending(self);
  } else if (!st.flush_queued) {
    // Lands behind everything already in the mailbox: those join this batch.
    // With gather_us, no sooner than that after the last commit began, so
    // that what arrives meanwhile joins too.
    st.flush_queued = true;
    auto next = st.last_commit + std::chrono::microseconds{st.limits.gather_us};
    auto now = std::chrono::steady_clock::now();
    if (next > now)
      self->delayed_send(self, std::chrono::duration_cast<std::chrono::microseconds>(next - now),
                         flush_atom::value);
    else
      self->send(self, flush_atom::value);
  }
}

store_actor::behavior_type store_behavior(store_pointer self, local_store* store, metrics* figures,
                                          store_actor_limits limits, settlement_policy policy) {
  name_this_thread("pb-store");
  self->state.store = store;
  self->state.figures = figures;
  self->state.limits = limits;
  self->state.policy = std::move(policy);
  self->delayed_send(self, std::chrono::milliseconds{limits.housekeeping_interval_ms},
                     tick_atom::value);
  // On a stop, what was received and not yet committed (nonces waiting for
  // a commit to ride with, above all) is committed first.
  self->set_exit_handler([=](caf::exit_msg& msg) {
    commit_pending(self);
    self->quit(msg.reason);
  });
  return {
    [=](create_atom, std::vector<payment_record>& records, std::vector<nonce_accepted>& nonces) {
      auto& st = self->state;
      for (auto& nonce : nonces)
        st.batch.nonces.push_back(std::move(nonce));
      auto promise = self->make_response_promise<std::vector<order_stored>>();
      st.create_promises.push_back({promise, st.batch.creates.size(), records.size()});
      for (auto& record : records)
        st.batch.creates.push_back(std::move(record));
      queue_flush(self);
      return promise;
    },
    [=](result_atom, payment_result& result) {
      auto& st = self->state;
      auto promise = self->make_response_promise<result_recorded>();
      st.result_promises.push_back(promise);
      st.batch.results.push_back(std::move(result));
      queue_flush(self);
      return promise;
    },
    [=](route_atom, payment_routed& route) {
      auto& st = self->state;
      auto promise = self->make_response_promise<bool>();
      st.route_promises.push_back(promise);
      st.batch.routes.push_back(std::move(route));
      queue_flush(self);
      return promise;
    },
    [=](std::vector<nonce_accepted>& nonces) {
      // Nonces come after their requests were answered and need no sync of
      // their own: they ride with the next commit, or go on their own after
      // nonce_delay_ms when nothing else comes.
      auto& st = self->state;
      for (auto& nonce : nonces)
        st.batch.nonces.push_back(std::move(nonce));
      if (st.batch.nonces.size() >= st.limits.max_batch_writes) {
        commit_pending(self);
      } else if (!st.nonce_flush_queued) {
        st.nonce_flush_queued = true;
        self->delayed_send(self, std::chrono::milliseconds{st.limits.nonce_delay_ms},
                           nonce_flush_atom::value);
      }
    },
    [=](webhook_atom, std::vector<webhook_update>& updates) {
      auto& st = self->state;
      auto promise = self->make_response_promise<bool>();
      st.webhook_promises.push_back(promise);
      for (auto& update : updates)
        st.batch.webhook_updates.push_back(std::move(update));
      queue_flush(self);
      return promise;
    },
    [=](delivered_atom, std::vector<uint64_t>& sequences,
        std::vector<database_conflict>& conflicts) {
      auto& st = self->state;
      st.batch.delivered.insert(st.batch.delivered.end(), sequences.begin(), sequences.end());
      for (auto& conflict : conflicts)
        st.batch.database_conflicts.push_back(std::move(conflict));
      queue_flush(self);
    },
    [=](reading_atom) {
      auto& st = self->state;
      st.sink_owed = false;
      if (st.sink_missed)
        wake_sink(self);
    },
    [=](attach_atom, caf::actor& sink, caf::actor& notifier, caf::actor& coordinator) {
      auto& st = self->state;
      st.sink = caf::actor_cast<sink_actor>(sink);
      st.notifier = caf::actor_cast<notifier_actor>(notifier);
      st.coordinator = caf::actor_cast<coordinator_actor>(coordinator);
    },
    [=](admin_atom, const std::string& switches, const std::string& audit_key,
        const std::string& audit) -> bool {
      auto& st = self->state;
      commit_pending(self);
      std::vector<std::pair<std::string, std::string>> entries;
      if (!switches.empty())
        entries.emplace_back("switches", switches);
      if (!audit_key.empty())
        entries.emplace_back(audit_key, audit);
      auto status = st.store->put_admin(entries);
      if (!status.ok()) {
        spdlog::error("local store: cannot write an admin change: {}", status.ToString());
        return false;
      }
      return true;
    },
    [=](resend_atom, const std::string& pay_id) { return resend_webhook(self, pay_id); },
    [=](flush_atom) { commit_pending(self); },
    [=](nonce_flush_atom) {
      auto& st = self->state;
      st.nonce_flush_queued = false;
      if (!st.batch.nonces.empty())
        queue_flush(self);  // with the commit on its way if there is one
    },
    [=](tick_atom) {
      auto& st = self->state;
      if (st.failing && st.store->resume().ok()) {
        // Ready again without waiting for a payment to try: a load balancer
        // that follows /readyz sends none until it says so.
        spdlog::info("local store writable again");
        st.failing = false;
        st.figures->store_up = 1;
      }
      self->delayed_send(self, std::chrono::milliseconds{st.limits.housekeeping_interval_ms},
                         tick_atom::value);
    },
  };
}

}  // namespace

store_actor spawn_store(caf::actor_system& system, local_store& store, metrics& figures,
                        store_actor_limits limits, settlement_policy policy) {
  return system.spawn<caf::detached>(store_behavior, &store, &figures, limits, std::move(policy));
}

}  // namespace paybus
