#include <algorithm>
#include <memory>
#include <unordered_set>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/common/round_timer.hpp"
#include "actors/ledger/sink_actor.hpp"
#include "common/clock.hpp"
#include "common/live_switches.hpp"
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
  sink_instance_claim claim;
  bool refused = false;  // the registry holds our number for another instance: send nothing
};

using sink_pointer = sink_actor::stateful_pointer<sink_state>;

void schedule(sink_pointer self, int64_t delay_ms) {
  self->state.timer.schedule(self, delay_ms);
}

void database_down(sink_pointer self, const std::string& error) {
  auto& st = self->state;
  st.figures->db_up = 0;
  st.backoff_ms = st.backoff_ms == 0 ? st.limits.backoff_min_ms
                                     : std::min(st.backoff_ms * 2, st.limits.backoff_max_ms);
  if (!st.reported_down)
    spdlog::warn("database unavailable, payments continue and rows wait in the "
                 "local store: {}",
                 error);
  st.reported_down = true;
  schedule(self, st.backoff_ms);
}

/// One batch of outbox rows on its way to the database, and what became of
/// each entry.
struct batch_delivery {
  const std::vector<outbox_entry>& entries;
  outbox_rows& rows;
  std::vector<bool> refused;                 // the database refused the row: it stays in the outbox
  std::vector<database_conflict> conflicts;  // kept apart: the entry goes
  std::unordered_set<std::string> orders_apart;
};

/// The database refused the row of `entry` for its content: logged and
/// counted; it stays in the outbox, to be sent again at the next start
/// (after someone has put right what the database holds against it).
void refuse(sink_pointer self, batch_delivery& batch, size_t entry, const std::string& error) {
  auto& st = self->state;
  batch.refused[entry] = true;
  st.figures->db_rows_refused_total.fetch_add(1, std::memory_order_relaxed);
  const auto& refused = batch.entries[entry];
  spdlog::error("the database refused the {} row of payment {} (outbox entry {}); it stays "
                "in the local store and is sent again at the next start, the rows after it "
                "go on: {}",
                refused.kind == 'R' ? "payment_results" : "payment_orders", refused.pay_id,
                refused.sequence, error);
}

/// Keeps apart the row of `entry` (for `pay_id`, `ours`): the database holds
/// another under its keys. False if the database cannot say what it holds.
bool keep_apart(sink_pointer self, batch_delivery& batch, const std::string& table,
                const payment_record& keys, std::string ours, const char* why) {
  auto& st = self->state;
  std::string error;
  auto theirs = st.database->rows_held(table, keys, error);
  if (!theirs) {
    database_down(self, error);
    return false;
  }
  st.figures->db_rows_conflicting_total.fetch_add(1, std::memory_order_relaxed);
  spdlog::error("payment {}: the {} row is not written: {}. Kept apart in the local store "
                "(paybus-replay show {}); ours {}, the table holds {}",
                keys.pay_id, table, why, keys.pay_id, ours, *theirs);
  if (table == "payment_orders")
    batch.orders_apart.insert(keys.pay_id);
  batch.conflicts.push_back(
    {table, keys.pay_id, std::move(ours), std::move(*theirs), unix_now_ms()});
  return true;
}

/// The keys `keep_apart` asks the table about: an order's own, a result's
/// pay_id.
const payment_record& keys_of(const payment_record& record) {
  return record;
}

payment_record keys_of(const payment_result& result) {
  payment_record keys;
  keys.pay_id = result.pay_id;
  return keys;
}

/// Keeps apart each row of `rows` named in `pay_ids` (the table holds another
/// under its keys). False if the database cannot say what it holds.
template <class Row>
bool keep_apart_named(sink_pointer self, batch_delivery& batch, const std::string& table,
                      const std::vector<Row>& rows, const std::vector<std::string>& pay_ids,
                      const char* why) {
  for (const auto& pay_id : pay_ids)
    for (const auto& row : rows)
      if (row.pay_id == pay_id && !keep_apart(self, batch, table, keys_of(row), row_json(row), why))
        return false;
  return true;
}

/// Sends `rows` (outbox entries `entries`) with `insert(rows, error,
/// differing)`, all at once, or one by one to find a refused one; rows the
/// table holds otherwise are kept apart. False if the database failed
/// meanwhile (a retry is scheduled).
template <class Row, class Insert>
bool send_rows(sink_pointer self, batch_delivery& batch, const std::string& table,
               const std::vector<Row>& rows, const std::vector<size_t>& entries, Insert insert,
               const char* why) {
  auto& st = self->state;
  std::string error;
  std::vector<std::string> differing;
  if (insert(rows, error, differing))
    return keep_apart_named(self, batch, table, rows, differing, why);
  if (!st.database->rows_refused()) {
    database_down(self, error);
    return false;
  }
  // The database refused a row for what it holds: sent again, it would be
  // refused again, and hold back every row after it. Find it, row by row.
  for (size_t i = 0; i < rows.size(); ++i) {
    if (insert(std::vector<Row>{rows[i]}, error, differing)) {
      if (!keep_apart_named(self, batch, table, rows, differing, why))
        return false;
      continue;
    }
    if (!st.database->rows_refused()) {
      database_down(self, error);
      return false;
    }
    refuse(self, batch, entries[i], error);
  }
  return true;
}

/// Sends the orders. False if the database failed meanwhile.
bool send_orders(sink_pointer self, batch_delivery& batch) {
  auto& database = *self->state.database;
  auto insert = [&](const std::vector<payment_record>& records, std::string& error,
                    std::vector<std::string>& differing) {
    return database.insert_orders(records, error, &differing);
  };
  return send_rows(self, batch, "payment_orders", batch.rows.records, batch.rows.record_entries,
                   insert,
                   "the table holds another row under its pay_id or its "
                   "(merchant_id, merchant_order_no)");
}

/// Sends the results; one whose order is kept apart is kept apart too.
bool send_results(sink_pointer self, batch_delivery& batch) {
  auto& st = self->state;
  std::vector<payment_result> results;
  std::vector<size_t> entries;
  for (size_t i = 0; i < batch.rows.results.size(); ++i) {
    const auto& result = batch.rows.results[i];
    bool order_apart = batch.orders_apart.count(result.pay_id) > 0;
    if (!order_apart) {
      auto status = st.store->database_conflict_kept(result.pay_id, "payment_orders", order_apart);
      if (!status.ok()) {
        spdlog::error("cannot read the store's database conflicts: {}", status.ToString());
        schedule(self, st.limits.backoff_max_ms);
        return false;
      }
    }
    if (!order_apart) {
      results.push_back(result);
      entries.push_back(batch.rows.result_entries[i]);
      continue;
    }
    if (!keep_apart(self, batch, "payment_results", keys_of(result), row_json(result),
                    "its order is kept apart (the table holds another order under its keys)"))
      return false;
  }
  auto& database = *st.database;
  auto insert = [&](const std::vector<payment_result>& rows, std::string& error,
                    std::vector<std::string>& differing) {
    return database.insert_results(rows, error, &differing);
  };
  return send_rows(self, batch, "payment_results", results, entries, insert,
                   "the table holds another result under its pay_id");
}

/// Delivers one batch of the outbox. Returns false when there is nothing
/// more to do for now (empty outbox or an error that scheduled a retry).
bool deliver_batch(sink_pointer self) {
  auto& st = self->state;
  std::vector<outbox_entry> entries;
  auto status = st.store->read_outbox(st.next_sequence, st.limits.batch_rows, entries);
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
  batch_delivery batch{entries, rows, std::vector<bool>(entries.size(), false), {}, {}};
  if (!send_orders(self, batch) || !send_results(self, batch))
    return false;
  // The writer trims them in its next batch, with the rows kept apart; a
  // trim lost to a crash only sends rows again, which the database ignores
  // (or names again).
  std::vector<uint64_t> delivered;
  delivered.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); ++i)
    if (!batch.refused[i])
      delivered.push_back(entries[i].sequence);
  st.figures->db_rows_written_total.fetch_add(delivered.size(), std::memory_order_relaxed);
  st.next_sequence = entries.back().sequence + 1;
  if (!delivered.empty())
    self->send(st.writer, delivered_atom::value, std::move(delivered), std::move(batch.conflicts));
  st.figures->db_backlog = st.store->outbox_size();
  return entries.size() == st.limits.batch_rows;
}

void delivery_round(sink_pointer self) {
  auto& st = self->state;
  st.figures->db_delivery_rounds_total.fetch_add(1, std::memory_order_relaxed);
  // Commits from here on wake the sink again: what came before is read below.
  self->send(st.writer, reading_atom::value);
  std::string error;
  if (st.refused)
    return;
  if (st.limits.switches != nullptr && st.limits.switches->paused(degrade_switch::db_feed)) {
    st.figures->db_backlog = st.store->outbox_size();
    schedule(self, st.limits.paused_poll_ms);
    return;
  }
  if (!st.database->ensure_ready(error)) {
    database_down(self, error);
    return;
  }
  if (!st.claim.confirmed) {
    auto holder = st.database->claim_instance(st.claim.id, st.claim.fingerprint, st.claim.uri,
                                              error);
    if (!holder) {
      database_down(self, error);
      return;
    }
    if (*holder != st.claim.fingerprint) {
      st.refused = true;
      auto why = "instance number " + std::to_string(st.claim.id)
                 + " (node.instance_id, taken while the registry was unreachable) belongs to "
                   "another instance in paybus_instances ("
                 + (holder->empty() ? std::string{"this store's fingerprint is there under "
                                                  "another number"}
                                    : "fingerprint " + *holder)
                 + "): two instances with one number issue the same pay_ids. Nothing is sent "
                   "to the database; the bus stops";
      spdlog::critical("{}", why);
      if (st.claim.refuse)
        st.claim.refuse(why);
      return;
    }
    st.claim.confirmed = true;
    spdlog::info("instance {} entered in the registry (fingerprint {})", st.claim.id,
                 st.claim.fingerprint);
  }
  if (st.reported_down)
    spdlog::info("database is back, draining {} waiting rows", st.store->outbox_size());
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

sink_actor::behavior_type sink_behavior(sink_pointer self, local_store* store, metrics* figures,
                                        pg_database_options database, store_actor writer,
                                        sink_actor_limits limits, sink_instance_claim claim) {
  name_this_thread("pb-sink");
  auto& st = self->state;
  st.store = store;
  st.figures = figures;
  st.database = std::make_unique<pg_database>(std::move(database));
  st.limits = limits;
  st.writer = std::move(writer);
  st.claim = std::move(claim);
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

}  // namespace

sink_actor spawn_sink(caf::actor_system& system, local_store& store, metrics& figures,
                      pg_database_options database, store_actor writer, sink_actor_limits limits,
                      sink_instance_claim claim) {
  return system.spawn<caf::detached>(sink_behavior, &store, &figures, std::move(database),
                                     std::move(writer), limits, std::move(claim));
}

}  // namespace paybus
