#include <algorithm>
#include <memory>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/common/round_timer.hpp"
#include "actors/ledger/sink_actor.hpp"
#include "common/metrics.hpp"
#include "common/thread_name.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

namespace {

struct sink_state {
  local_store* store = nullptr;
  metrics* figures = nullptr;
  std::unique_ptr<pg_database> database;
  store_actor writer;  // trims the outbox of what the database holds
  sink_actor_limits limits;
  uint64_t next_sequence = 0;  // everything before it is delivered
  int64_t backoff_ms = 0;
  round_timer timer;
  bool reported_down = false;
};

using sink_pointer = sink_actor::stateful_pointer<sink_state>;

void schedule(sink_pointer self, int64_t delay_ms) {
  self->state.timer.schedule(self, delay_ms);
}

void database_down(sink_pointer self, const std::string& error) {
  auto& st = self->state;
  st.figures->db_up = 0;
  st.backoff_ms = st.backoff_ms == 0
                    ? st.limits.backoff_min_ms
                    : std::min(st.backoff_ms * 2, st.limits.backoff_max_ms);
  if (!st.reported_down)
    spdlog::warn("database unavailable, payments continue and rows wait in the "
                 "local store: {}",
                 error);
  st.reported_down = true;
  schedule(self, st.backoff_ms);
}

/// Sends a batch's rows one by one (orders first), marking in `refused` the
/// entries whose row the database refuses for its content: each is logged
/// and counted, and stays in the outbox, to be sent again at the next start
/// (after someone has put right what the database holds against it). False
/// if the database failed otherwise meanwhile (a retry is scheduled).
bool find_refused_rows(sink_pointer self, const std::vector<outbox_entry>& entries,
                       const std::vector<payment_record>& records,
                       const std::vector<size_t>& record_entries,
                       const std::vector<payment_result>& results,
                       const std::vector<size_t>& result_entries, std::vector<bool>& refused) {
  auto& st = self->state;
  auto one = [&](size_t entry, bool inserted, const std::string& error) {
    if (inserted)
      return true;
    if (!st.database->rows_refused()) {
      database_down(self, error);
      return false;
    }
    refused[entry] = true;
    st.figures->db_rows_refused_total.fetch_add(1, std::memory_order_relaxed);
    spdlog::error("the database refused the {} row of payment {} (outbox entry {}); it stays "
                  "in the local store and is sent again at the next start, the rows after it "
                  "go on: {}",
                  entries[entry].kind == 'R' ? "payment_results" : "payment_orders",
                  entries[entry].pay_id, entries[entry].sequence, error);
    return true;
  };
  std::string error;
  for (size_t i = 0; i < records.size(); ++i)
    if (!one(record_entries[i], st.database->insert_orders({records[i]}, error), error))
      return false;
  for (size_t i = 0; i < results.size(); ++i)
    if (!one(result_entries[i], st.database->insert_results({results[i]}, error), error))
      return false;
  return true;
}

/// Delivers one batch of the outbox. Returns false when there is nothing
/// more to do for now (empty outbox or an error that scheduled a retry).
bool deliver_batch(sink_pointer self) {
  auto& st = self->state;
  std::vector<outbox_entry> entries;
  auto status = st.store->read_outbox(st.next_sequence, st.limits.batch_rows,
                                      entries);
  if (!status.ok()) {
    spdlog::error("cannot read the database outbox: {}", status.ToString());
    schedule(self, st.limits.backoff_max_ms);
    return false;
  }
  if (entries.empty())
    return false;
  // Order rows first, then result rows: a result's order is always earlier
  // in the outbox, so it is in this batch or already delivered. An entry
  // that cannot be read holds the batch back, and everything after it.
  outbox_rows rows;
  size_t read = 0;
  status = st.store->read_outbox_rows(entries, rows, read);
  if (!status.ok()) {
    spdlog::error("database outbox: {}; it and what follows wait", status.ToString());
    schedule(self, st.limits.backoff_max_ms);
    return false;
  }
  auto& records = rows.records;
  auto& results = rows.results;
  auto& record_entries = rows.record_entries;
  auto& result_entries = rows.result_entries;
  std::string error;
  std::vector<bool> refused(entries.size(), false);
  if (!st.database->insert_orders(records, error)
      || !st.database->insert_results(results, error)) {
    if (!st.database->rows_refused()) {
      database_down(self, error);
      return false;
    }
    // The database refused a row for what it holds: sent again, it would be
    // refused again, and hold back every row after it. Find it, row by row.
    if (!find_refused_rows(self, entries, records, record_entries, results, result_entries,
                           refused))
      return false;
  }
  // The writer trims them in its next batch; a trim lost to a crash only
  // sends rows again that the database ignores.
  std::vector<uint64_t> delivered;
  delivered.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i)
    if (!refused[i])
      delivered.push_back(entries[i].sequence);
  st.figures->db_rows_written_total.fetch_add(delivered.size(), std::memory_order_relaxed);
  st.next_sequence = entries.back().sequence + 1;
  if (!delivered.empty())
    self->send(st.writer, delivered_atom::value, std::move(delivered));
  st.figures->db_backlog = st.store->outbox_size();
  return entries.size() == st.limits.batch_rows;
}

void delivery_round(sink_pointer self) {
  auto& st = self->state;
  st.figures->db_delivery_rounds_total.fetch_add(1, std::memory_order_relaxed);
  // Commits from here on wake the sink again: what came before is read below.
  self->send(st.writer, reading_atom::value);
  std::string error;
  if (!st.database->ensure_ready(error)) {
    database_down(self, error);
    return;
  }
  if (st.reported_down)
    spdlog::info("database is back, draining {} waiting rows",
                 st.store->outbox_size());
  st.reported_down = false;
  st.backoff_ms = 0;
  st.figures->db_up = 1;
  // A bounded number of batches per round keeps the mailbox (and so a
  // shutdown request) served.
  for (int batch = 0; batch < 20; ++batch) {
    if (!deliver_batch(self)) {
      schedule(self, st.limits.idle_poll_ms);
      return;
    }
  }
  schedule(self, 0);
}

sink_actor::behavior_type sink_behavior(sink_pointer self, local_store* store,
                                        metrics* figures,
                                        pg_database_options database,
                                        store_actor writer, sink_actor_limits limits) {
  name_this_thread("pb-sink");
  auto& st = self->state;
  st.store = store;
  st.figures = figures;
  st.database = std::make_unique<pg_database>(std::move(database));
  st.limits = limits;
  st.writer = std::move(writer);
  st.figures->db_backlog = store->outbox_size();
  schedule(self, 0);
  return {
    [=](wake_atom) {
      // While backing off, a wake does not hammer a dead database. An idle
      // poll is cut short, after a short gathering time so that rows go to
      // the database in few large statements rather than many small ones.
      auto& st = self->state;
      if (st.backoff_ms != 0)
        return;
      if (st.timer.pending() && st.timer.pending_delay_ms() == st.limits.idle_poll_ms)
        st.timer.replace(self, st.limits.gather_ms);
      else
        schedule(self, st.limits.gather_ms);
    },
    [=](tick_atom, uint64_t generation) {
      if (self->state.timer.take(generation))
        delivery_round(self);
    },
  };
}

} // namespace

sink_actor spawn_sink(caf::actor_system& system, local_store& store,
                      metrics& figures, pg_database_options database,
                      store_actor writer, sink_actor_limits limits) {
  return system.spawn<caf::detached>(sink_behavior, &store, &figures,
                                     std::move(database), std::move(writer), limits);
}

} // namespace paybus
