#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <rocksdb/compaction_filter.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/write_batch.h>

#include "messages/types.hpp"
#include "storage/local/changes.hpp"
#include "storage/local/record_codec.hpp"

namespace paybus {

struct local_store_options {
  bool sync = true;  // fsync every batch (never off in production)
  size_t block_cache_bytes = 32u << 20;
  size_t write_buffer_bytes = 16u << 20;
  int64_t nonce_retention_ms = 600'000;  // compactions drop older nonces
  // Writes are refused (Status::NoSpace) while the store's file system has
  // less free space than this, before RocksDB's log can run into ENOSPC:
  // a write error in the log is one RocksDB does not recover from in place.
  uint64_t min_free_bytes = 64u << 20;
  // Where RocksDB keeps its files: the machine's file system unless set
  // (the deterministic simulation keeps a store in memory).
  rocksdb::Env* env = nullptr;
  int file_opening_threads = 16;  // RocksDB's threads that open table files at open
};

/// The RocksDB local store. Column families:
///   orders   pay_id -> encoded payment_record
///   idem     merchant_id \0 merchant_order_no -> pay_id
///   outbox   u64 big-endian sequence -> kind byte + pay_id
///   nonces   merchant_id \0 nonce -> u64 big-endian seen_at_ms (expired
///            ones are dropped by a compaction filter and ignored on read)
///   meta     name -> value (instance_id, fingerprint)
///   results  pay_id -> encoded payment_result
///   dispatch pay_id -> "" for each payment not final yet
///   webhooks u64 big-endian due_ms + event_id -> encoded webhook_entry
///   conflicts pay_id \0 channel_id \0 status \0 channel_txn_id \0 amount ->
///            encoded payment_result: a result that contradicts the payment's
///            final one (or its flagged one), kept for the people who settle
///            it (never applied)
///   db_conflicts pay_id \0 table -> encoded database_conflict: a row the
///            transaction database holds otherwise under the same keys, kept
///            apart instead of the row that was not written
///   succeeded channel_id \0 YYYY-MM-DD \0 pay_id -> currency (3 bytes) +
///            encoded payment_result: every SUCCEEDED payment by the channel
///            and UTC day of its result, written with the result
///            (reconciliation reads one channel's day in pay_id order)
///   admin    "switches" -> the operator's switches (JSON, common/live_switches.hpp);
///            "audit/" + u64 big-endian at_ms + u64 big-endian number -> one
///            change made through the admin console (JSON: at, who, command, result);
///            "slots" -> the cluster's slot table as last read (actors/cluster/slot_table.hpp)
/// Thread-safety: reads from any thread; `apply` only from the single writer.
class local_store {
public:
  /// Opens (creating if missing) the store in `dir`. Returns null with a one
  /// line `error`, e.g. when another process holds the store.
  static std::unique_ptr<local_store> open(const std::string& dir,
                                           const local_store_options& options, std::string& error);
  ~local_store();

  local_store(const local_store&) = delete;
  local_store& operator=(const local_store&) = delete;

  /// Reads what the store holds of `keys` (an idempotency key's pay_id
  /// brings that payment's order too). The store decides nothing: the rules
  /// of actors/payment/settlement.hpp do, over this snapshot.
  rocksdb::Status read(const snapshot_keys& keys, store_snapshot& held);

  /// Writes `changes` as one WriteBatch, synced (unless the store was opened
  /// with sync off): orders, idempotency entries, results, outbox entries
  /// (numbered here, in order), dispatch entries, webhook entries,
  /// conflicts and nonces together or not at all. Single writer only.
  rocksdb::Status apply(const store_changes& changes);

  /// A stored result, if any.
  rocksdb::Status get_result(const std::string& pay_id, std::optional<payment_result>& result);

  /// Merchant notifications due at or before `now_ms`: of each merchant's,
  /// at most `room(merchant_id)`, oldest first. `next_due`: the earliest due
  /// time among those left (possibly already past), if any. `cursor` is the
  /// caller's: where it read before, updated here; `monotonic_ms` decides
  /// whether this read walks every queue.
  rocksdb::Status due_webhooks(int64_t now_ms, int64_t monotonic_ms,
                               const std::function<size_t(const std::string&)>& room,
                               webhook_cursor& cursor, std::vector<webhook_entry>& entries,
                               std::optional<int64_t>& next_due);
  /// Delivered (or given up): gone. Tests and tools; a running bus writes
  /// through its store writer (apply).
  rocksdb::Status finish_webhook(const webhook_entry& entry);
  /// Not delivered: tried again at `due_ms`, one attempt more. Tests and tools.
  rocksdb::Status reschedule_webhook(const webhook_entry& entry, int64_t due_ms);
  int64_t webhook_backlog() const {
    return webhook_backlog_.load(std::memory_order_relaxed);
  }

  /// Payments accepted but not final yet, in pay_id order from `from_pay_id`
  /// (to drive after a restart, or when the coordinator has room again);
  /// not those whose result is flagged, which are for people to settle.
  rocksdb::Status pending_dispatch(std::vector<payment_record>& records, size_t limit,
                                   const std::string& from_pay_id = {});

  rocksdb::Status get(const std::string& pay_id, std::optional<payment_record>& record);
  rocksdb::Status find(const std::string& merchant_id, const std::string& merchant_order_no,
                       std::optional<payment_record>& record);

  /// Up to `limit` outbox entries with sequence >= `from_sequence`, in order.
  rocksdb::Status read_outbox(uint64_t from_sequence, size_t limit,
                              std::vector<outbox_entry>& entries);
  /// The rows of `entries`, in order, up to the first that cannot be read
  /// (a failed read, or an entry naming a payment or result the store does
  /// not hold: Corruption, naming the entry). `read` is how many entries
  /// came before it: only those may be delivered and removed. Not read is
  /// not absent.
  rocksdb::Status read_outbox_rows(const std::vector<outbox_entry>& entries, outbox_rows& rows,
                                   size_t& read);
  /// Whether a row of `table` for `pay_id` was kept apart (the database
  /// holds another under its keys).
  rocksdb::Status database_conflict_kept(const std::string& pay_id, const std::string& table,
                                         bool& kept);
  /// Removes delivered entries. Tools; a running bus writes through its
  /// store writer (apply).
  rocksdb::Status remove_outbox(const std::vector<outbox_entry>& entries);
  int64_t outbox_size() const {
    return outbox_size_.load(std::memory_order_relaxed);
  }

  rocksdb::Status get_meta(const std::string& name, std::optional<std::string>& value);
  /// Synced.
  rocksdb::Status put_meta(const std::string& name, const std::string& value);

  /// The greatest pay_id in the store, empty if none.
  std::string last_pay_id();

  /// Whether `nonce` of `merchant_id` was accepted within the retention
  /// before `now_ms`; nullopt if the store cannot be read.
  std::optional<bool> nonce_seen(std::string_view merchant_id, std::string_view nonce,
                                 int64_t now_ms);

  /// Compacts the nonce family now (expired nonces go); tests and tools.
  rocksdb::Status compact_nonces();

  /// A payment of the `succeeded` index.
  struct succeeded_payment {
    std::string currency;
    payment_result result;  // its pay_id, channel, transaction, amount, finished_at
  };
  /// Calls `visit` for each payment that became SUCCEEDED through
  /// `channel_id` with its result finished on UTC day `day` ("YYYY-MM-DD"),
  /// in pay_id order from the first after `after` (empty: from the first),
  /// until it returns false. Corruption for an entry that cannot be read.
  rocksdb::Status succeeded_on(const std::string& channel_id, const std::string& day,
                               const std::string& after,
                               const std::function<bool(const succeeded_payment&)>& visit);

  /// Calls `visit(key, value)` for each entry of column family `family` in
  /// key order from `from`, until it returns false. Offline tools only.
  rocksdb::Status scan(const std::string& family, const std::string& from,
                       const std::function<bool(std::string_view, std::string_view)>& visit);

  /// An entry of the `admin` family, if any.
  rocksdb::Status get_admin(const std::string& name, std::optional<std::string>& value);
  /// Puts entries of the `admin` family in one synced batch. Single writer only.
  rocksdb::Status put_admin(const std::vector<std::pair<std::string, std::string>>& entries);
  /// The last `count` values under `prefix` in the `admin` family, oldest first.
  rocksdb::Status admin_tail(const std::string& prefix, size_t count,
                             std::vector<std::string>& values);
  /// The webhook outbox entry of `event_id` in `merchant_id`'s queue, if one waits.
  rocksdb::Status find_webhook(const std::string& merchant_id, const std::string& event_id,
                               std::optional<webhook_entry>& entry);
  /// The payments not final yet (entries of the `dispatch` family): counted
  /// at open, kept by `apply`.
  int64_t dispatch_size() const {
    return dispatch_size_.load(std::memory_order_relaxed);
  }
  /// The oldest outbox entry's pay_id and the earliest first_due_ms of a
  /// waiting webhook, if any.
  rocksdb::Status oldest_waiting(std::optional<std::string>& outbox_pay_id,
                                 std::optional<int64_t>& webhook_first_due_ms);

  /// Number of keys per column family (tests and `verify`).
  std::map<std::string, uint64_t> count_keys();

  /// Clears a background error (e.g. after the disk had no space).
  /// Clears a RocksDB background error and tells whether writes can go on
  /// (also: enough free space, see local_store_options::min_free_bytes).
  rocksdb::Status resume();

private:
  local_store() = default;

  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* orders_ = nullptr;
  rocksdb::ColumnFamilyHandle* idem_ = nullptr;
  rocksdb::ColumnFamilyHandle* outbox_ = nullptr;
  rocksdb::ColumnFamilyHandle* nonces_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  rocksdb::ColumnFamilyHandle* results_ = nullptr;
  rocksdb::ColumnFamilyHandle* dispatch_ = nullptr;
  rocksdb::ColumnFamilyHandle* webhooks_ = nullptr;
  rocksdb::ColumnFamilyHandle* conflicts_ = nullptr;
  rocksdb::ColumnFamilyHandle* db_conflicts_ = nullptr;
  rocksdb::ColumnFamilyHandle* succeeded_ = nullptr;
  rocksdb::ColumnFamilyHandle* admin_ = nullptr;

  /// Indexes the SUCCEEDED payments of a store written before the
  /// `succeeded` family existed, once (a meta entry says it is done).
  rocksdb::Status index_succeeded_payments();
  std::atomic<int64_t> webhook_backlog_{0};
  bool sync_ = true;
  int64_t nonce_retention_ms_ = 600'000;
  std::unique_ptr<rocksdb::CompactionFilter> nonce_filter_;
  uint64_t next_sequence_ = 1;  // writer thread only
  std::atomic<int64_t> outbox_size_{0};
  std::atomic<int64_t> dispatch_size_{0};
  std::atomic<uint64_t> outbox_head_hint_{0};  // no outbox entry below it (oldest_waiting)
  std::string dir_;
  uint64_t min_free_bytes_ = 0;

  /// Every write of the store goes through here: refused with NoSpace while
  /// the file system holds less than `min_free_bytes_` free (one statvfs).
  rocksdb::Status write(bool sync, rocksdb::WriteBatch& batch);
  /// At open: moves webhook outbox entries of the earlier layout (one queue
  /// for all merchants) to their merchant's queue.
  rocksdb::Status queue_webhooks_by_merchant();
  rocksdb::Status room_to_write() const;
  /// `key` of `family`, or nothing if it is not there (not an error).
  rocksdb::Status get_optional(rocksdb::ColumnFamilyHandle* family, const std::string& key,
                               std::optional<std::string>& value);
};

}  // namespace paybus
