#pragma once

// Settlement: what a batch of creates, routes and results does to the
// payments, given what the local store holds of them. A pure function over
// plain values (no RocksDB, no actors, no clock): the store writer reads a
// snapshot, calls `settle`, and has the store apply the changes it returns
// in one synced batch. Every idempotency, join, mismatch and conflict rule
// of the bus is here (docs/architecture.md, "Settlement").

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "messages/types.hpp"
#include "storage/local/changes.hpp"

namespace paybus {

/// Everything the single writer settles and commits in one synced batch.
struct store_batch {
  std::vector<payment_record> creates;
  std::vector<payment_routed> routes;
  std::vector<payment_result> results;
  std::vector<nonce_accepted> nonces;
  // Bookkeeping that rides along: the notifier's outcomes, and the outbox
  // entries the database holds now.
  std::vector<webhook_update> webhook_updates;
  std::vector<uint64_t> delivered;
  std::vector<database_conflict> database_conflicts;  // kept apart, as they come
};

/// A result kept apart, never applied, and what it stood against.
struct result_conflict {
  enum class against {
    final_result,    // the payment's final result: paid twice, or after it was closed
    flagged_result,  // a result kept flagged (another amount): for people to settle
    route,           // the channel the payment is routed to, not the one that spoke
    waiting_result,  // a result waiting for its order
  };
  against what = against::final_result;
  payment_result kept;  // for `route`: the order's status, routed channel and amount
  payment_result late;
};

/// The answers, one per operation, in order.
struct store_batch_answers {
  std::vector<order_stored> creates;
  std::vector<bool> routes;
  std::vector<result_recorded> results;
  size_t flagged = 0;  // results kept but not joined: amount mismatch
  // Results kept apart, each new one once (docs/operations.md, "Conflicting results").
  std::vector<result_conflict> conflicts;
  std::vector<int64_t> join_latencies_ms;       // order created -> result joined
  std::vector<webhook_queued> webhooks_queued;  // per merchant, the earliest due put
  bool outbox_grew = false;                     // the database sink has rows to read
};

/// What settlement is told beside the batch.
struct settlement_policy {
  // Which final payments get a webhook outbox entry: every one that names a
  // notify_url, and all those of the merchants listed here (the merchants
  // with a default target). Unset: every final payment gets one.
  std::optional<std::set<std::string>> default_webhook_merchants;
};

struct settlement {
  store_batch_answers answers;
  store_changes changes;
};

/// The keys `settle` needs read for `batch`.
snapshot_keys keys_to_read(const store_batch& batch);

/// Decides `batch` against `held` (read with the keys of `keys_to_read`) at
/// `now_ms`. Creates come first, then routes, then results, each seeing what
/// the ones before it decided:
/// - a create whose (merchant, order no) is held, or came earlier in the
///   batch, is answered with that payment (existing, or conflict when its
///   body differs) and writes nothing; a new one
///   writes its order, idempotency entry and outbox 'O' row, and joins a
///   result that came before it (or flags it, at another amount);
/// - a route is recorded while the payment is neither final nor flagged;
/// - a result joins its order (status, outbox 'R' row, webhook, dispatch
///   entry gone) when the amounts agree, is kept flagged when they do not,
///   waits for an order not here yet, and is kept apart as a conflict (never
///   applied) when it contradicts a final, flagged or waiting result or comes
///   from a channel the payment is not routed to.
/// The notifier's webhook updates remove the entry they name and queue it
/// again when it is to be tried again; delivered outbox entries go.
/// A final status never changes.
settlement settle(const store_batch& batch, const store_snapshot& held,
                  const settlement_policy& policy, int64_t now_ms);

/// How a create request is answered, given the order the store holds for its
/// (merchant, order no): `created_now` is true only for the one request whose
/// write created it. Same body again is the existing payment; any field
/// different is a conflict. Never a second payment.
admission decide_admission(bool created_now, const payment_order& stored,
                           const payment_order& requested);

/// Whether a final payment is to be notified.
bool wants_webhook(const settlement_policy& policy, const payment_record& record);

/// Whether `late` says something else than the result `kept`: another
/// status or channel, another transaction of the same channel, or another
/// amount. A repeat of the same answer (a duplicate notification, a query
/// after the answer) does not.
bool contradicts(const payment_result& kept, const payment_result& late);

}  // namespace paybus
