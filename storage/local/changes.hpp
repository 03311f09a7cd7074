#pragma once

// The plain values between the local store and the rules that decide what
// it writes: which keys a batch needs read, what the store holds of them
// (a snapshot), and the writes a settlement asks for. No RocksDB here.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "messages/types.hpp"
#include "storage/local/record_codec.hpp"

namespace paybus {

using codec::webhook_entry;

/// One entry of the database outbox: a row the transaction database still
/// has to receive. Entries are numbered in commit order.
struct outbox_entry {
  uint64_t sequence = 0;
  char kind = 'O';  // 'O': a payment_orders row, 'R': a payment_results row
  std::string pay_id;
};

/// The database rows a run of outbox entries names, read from the store:
/// orders and results apart, each with the index of its entry.
struct outbox_rows {
  std::vector<payment_record> records;
  std::vector<size_t> record_entries;
  std::vector<payment_result> results;
  std::vector<size_t> result_entries;
};

/// A webhook entry the notifier is done with: gone (no `to`), or queued
/// again as `to`. Applied once however often it comes: a move whose `from`
/// is gone already was applied before (a hand-back sent again).
struct webhook_move {
  webhook_entry from;               // by merchant_id, due_ms, event_id
  std::optional<webhook_entry> to;  // put: merchant_id, due_ms, event_id, the rest
};

/// The keys one batch needs read before it is settled.
struct snapshot_keys {
  std::vector<std::string> idempotency_keys;  // their pay_id, and that pay_id's order
  std::vector<std::string> order_ids;         // orders by pay_id
  std::vector<std::string> result_ids;        // results by pay_id
  std::vector<std::string> conflict_keys;     // whether each is kept already
};

/// What the store holds of those keys (absent keys are absent here).
struct store_snapshot {
  std::unordered_map<std::string, std::string> pay_ids;     // idempotency key -> pay_id
  std::unordered_map<std::string, payment_record> orders;   // pay_id -> order
  std::unordered_map<std::string, payment_result> results;  // pay_id -> result
  std::unordered_set<std::string> conflicts;                // conflict keys kept
};

/// The writes of one settled batch, applied as one synced WriteBatch.
struct store_changes {
  std::vector<payment_record> orders;                            // put; one per pay_id
  std::vector<std::pair<std::string, std::string>> idempotency;  // key -> pay_id
  std::vector<payment_result> results;                           // put; one per pay_id
  std::vector<std::string> results_removed;   // results waiting for an order, kept apart instead
  std::vector<outbox_entry> outbox;           // numbered when applied, in this order
  std::vector<std::string> dispatch_added;    // payments to drive
  std::vector<std::string> dispatch_removed;  // payments final now
  std::vector<webhook_entry> webhooks;        // new: merchant_id, due_ms, event_id, the rest
  std::vector<webhook_move> webhook_moves;    // the notifier's outcomes
  std::vector<uint64_t> outbox_removed;       // sequences the database holds
  std::vector<database_conflict> database_conflicts;  // rows the database holds otherwise
  std::vector<payment_result> conflicts;              // kept under conflict_key, never applied
  std::vector<nonce_accepted> nonces;
  // Payments that became SUCCEEDED (the order's currency, the result):
  // indexed by channel and UTC day for reconciliation.
  std::vector<std::pair<std::string, payment_result>> succeeded;

  bool empty() const {
    return orders.empty() && idempotency.empty() && results.empty() && results_removed.empty()
           && outbox.empty() && dispatch_added.empty() && dispatch_removed.empty()
           && webhooks.empty() && webhook_moves.empty() && outbox_removed.empty()
           && conflicts.empty() && database_conflicts.empty() && nonces.empty()
           && succeeded.empty();
  }
};

/// Where a reader of the webhook outbox stands (the notifier's own state,
/// passed to local_store::due_webhooks): where each merchant's queue began
/// at the last read, so the next read seeks there, past the deletion markers
/// that delivered entries leave at the head; and every `walk_interval_ms` a
/// read of every queue from its start (which finds merchants new to it).
struct webhook_cursor {
  static constexpr int64_t walk_interval_ms = 10'000;
  std::map<std::string, int64_t> heads;  // merchant -> due time its queue began at
  int64_t walked_ms = 0;                 // monotonic time of the last walk; 0: never

  /// The writer queued a webhook of `merchant_id` due at `due_ms`.
  void note_put(const std::string& merchant_id, int64_t due_ms) {
    auto [at, fresh] = heads.emplace(merchant_id, due_ms);
    if (!fresh && due_ms < at->second)
      at->second = due_ms;
  }

  bool walk_due(int64_t monotonic_ms) const {
    return walked_ms == 0 || monotonic_ms - walked_ms >= walk_interval_ms;
  }
};

/// The idempotency key of an order: merchant id, NUL, merchant order no.
inline std::string idempotency_key(const std::string& merchant_id,
                                   const std::string& merchant_order_no) {
  std::string key;
  key.reserve(merchant_id.size() + 1 + merchant_order_no.size());
  key.append(merchant_id);
  key.push_back('\0');
  key.append(merchant_order_no);
  return key;
}

/// The key a conflicting result is kept under: one entry however often the
/// same answer comes.
inline std::string database_conflict_key(const std::string& pay_id, const std::string& table) {
  return pay_id + '\0' + table;
}

inline std::string conflict_key(const payment_result& late) {
  return late.pay_id + '\0' + late.channel_id + '\0' + to_string(late.status) + '\0'
         + late.channel_txn_id + '\0' + std::to_string(late.amount_minor);
}

}  // namespace paybus
