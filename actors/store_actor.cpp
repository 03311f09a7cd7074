#include <vector>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/spawn.hpp"
#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "storage/local_store.hpp"

namespace paybus {

namespace {

struct store_state {
  local_store* store = nullptr;
  metrics* figures = nullptr;
  sink_actor sink;
  store_actor_limits limits;
  std::vector<payment_record> orders;
  // One promise per create request, answering orders [first, first + count).
  struct waiting {
    caf::typed_response_promise<std::vector<order_stored>> promise;
    size_t first = 0;
    size_t count = 0;
  };
  std::vector<waiting> promises;
  std::vector<nonce_accepted> nonces;
  std::vector<order_stored> results;
  bool flush_queued = false;
  bool failing = false;
};

using store_pointer = store_actor::stateful_pointer<store_state>;

/// Commits everything queued as one synced batch and answers each requester.
void commit_pending(store_pointer self) {
  auto& st = self->state;
  st.flush_queued = false;
  if (st.orders.empty() && st.nonces.empty())
    return;
  auto status = st.store->commit(st.orders, st.nonces, st.results);
  if (!status.ok()) {
    st.figures->store_write_errors_total.fetch_add(1, std::memory_order_relaxed);
    if (!st.failing)
      spdlog::error("local store write failed: {}", status.ToString());
    st.failing = true;
    st.figures->store_up = 0;
    for (auto& waiting : st.promises)
      waiting.promise.deliver(caf::make_error(errc::store_unavailable));
  } else {
    if (st.failing)
      spdlog::info("local store writes again");
    st.failing = false;
    st.figures->store_up = 1;
    st.figures->store_batches_total.fetch_add(1, std::memory_order_relaxed);
    st.figures->store_batched_writes_total.fetch_add(st.orders.size(),
                                                     std::memory_order_relaxed);
    st.figures->db_backlog = st.store->outbox_size();
    bool any_created = false;
    for (const auto& result : st.results)
      any_created = any_created || result.created;
    for (auto& waiting : st.promises) {
      std::vector<order_stored> answer;
      answer.reserve(waiting.count);
      for (size_t i = waiting.first; i < waiting.first + waiting.count; ++i)
        answer.push_back(std::move(st.results[i]));
      waiting.promise.deliver(std::move(answer));
    }
    if (any_created)
      self->send(st.sink, wake_atom::value);
  }
  st.orders.clear();
  st.promises.clear();
  st.nonces.clear();
  st.results.clear();
}

void queue_flush(store_pointer self) {
  auto& st = self->state;
  if (st.orders.size() >= st.limits.max_batch_writes) {
    commit_pending(self);
  } else if (!st.flush_queued) {
    // Lands behind everything already in the mailbox: those join this batch.
    st.flush_queued = true;
    self->send(self, flush_atom::value);
  }
}

store_actor::behavior_type store_behavior(store_pointer self,
                                          local_store* store, metrics* figures,
                                          sink_actor sink,
                                          store_actor_limits limits) {
  self->state.store = store;
  self->state.figures = figures;
  self->state.sink = std::move(sink);
  self->state.limits = limits;
  self->delayed_send(self, std::chrono::milliseconds{limits.housekeeping_interval_ms},
                     tick_atom::value);
  return {
    [=](create_atom, std::vector<payment_record>& records) {
      auto& st = self->state;
      auto promise = self->make_response_promise<std::vector<order_stored>>();
      st.promises.push_back({promise, st.orders.size(), records.size()});
      for (auto& record : records)
        st.orders.push_back(std::move(record));
      queue_flush(self);
      return promise;
    },
    [=](std::vector<nonce_accepted>& nonces) {
      auto& st = self->state;
      for (auto& nonce : nonces)
        st.nonces.push_back(std::move(nonce));
      queue_flush(self);
    },
    [=](flush_atom) { commit_pending(self); },
    [=](tick_atom) {
      auto& st = self->state;
      if (st.failing) {
        auto status = st.store->resume();
        if (status.ok())
          spdlog::info("local store resumed after an error");
      }
      self->delayed_send(self,
                         std::chrono::milliseconds{st.limits.housekeeping_interval_ms},
                         tick_atom::value);
    },
  };
}

} // namespace

store_actor spawn_store(caf::actor_system& system, local_store& store,
                        metrics& figures, sink_actor sink,
                        store_actor_limits limits) {
  return system.spawn<caf::detached>(store_behavior, &store, &figures,
                                     std::move(sink), limits);
}

} // namespace paybus
