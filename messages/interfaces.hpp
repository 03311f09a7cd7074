#pragma once

// The whole conversation of paybus in one place: atoms, the error enum, the
// type-id block and every actor interface.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/replies_to.hpp>
#include <caf/type_id.hpp>
#include <caf/typed_actor.hpp>

#include "messages/types.hpp"

namespace paybus {

/// Errors that cross actor boundaries.
enum class errc : uint8_t {
  store_unavailable = 1,  // the local store cannot write
  overloaded,             // a bounded queue is full
  owner_unavailable,      // the instance that owns it cannot be reached
};

inline std::string to_string(errc code) {
  switch (code) {
    case errc::store_unavailable:
      return "store_unavailable";
    case errc::overloaded:
      return "overloaded";
    case errc::owner_unavailable:
      return "owner_unavailable";
  }
  return "unknown";
}

/// The admin console's counterpart in paybusd (API.md section 8), published
/// on admin.listen through CAF's middleman.
using admin_actor = caf::typed_actor<caf::replies_to<admin_request>::with<admin_reply>>;

}  // namespace paybus

CAF_ERROR_CODE_ENUM(paybus::errc, "paybus")

CAF_BEGIN_TYPE_ID_BLOCK(paybus, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(paybus, (paybus::payment_order))
  CAF_ADD_TYPE_ID(paybus, (paybus::payment_record))
  CAF_ADD_TYPE_ID(paybus, (paybus::order_stored))
  CAF_ADD_TYPE_ID(paybus, (paybus::payment_lookup))
  CAF_ADD_TYPE_ID(paybus, (paybus::nonce_accepted))
  CAF_ADD_TYPE_ID(paybus, (std::vector<paybus::payment_record>) )
  CAF_ADD_TYPE_ID(paybus, (std::vector<paybus::order_stored>) )
  CAF_ADD_TYPE_ID(paybus, (std::vector<paybus::nonce_accepted>) )
  CAF_ADD_TYPE_ID(paybus, (paybus::payment_result))
  CAF_ADD_TYPE_ID(paybus, (paybus::result_recorded))
  CAF_ADD_TYPE_ID(paybus, (paybus::payment_routed))
  CAF_ADD_TYPE_ID(paybus, (paybus::channel_outcome))
  CAF_ADD_TYPE_ID(paybus, (paybus::webhook_delivery))
  CAF_ADD_TYPE_ID(paybus, (paybus::webhook_update))
  CAF_ADD_TYPE_ID(paybus, (paybus::webhook_queued))
  CAF_ADD_TYPE_ID(paybus, (std::vector<paybus::webhook_update>) )
  CAF_ADD_TYPE_ID(paybus, (std::vector<paybus::webhook_queued>) )
  CAF_ADD_TYPE_ID(paybus, (std::vector<uint64_t>) )
  CAF_ADD_TYPE_ID(paybus, (paybus::database_conflict))
  CAF_ADD_TYPE_ID(paybus, (std::vector<paybus::database_conflict>) )
  CAF_ADD_TYPE_ID(paybus, (paybus::admin_request))
  CAF_ADD_TYPE_ID(paybus, (paybus::admin_reply))
CAF_END_TYPE_ID_BLOCK(paybus)

CAF_ADD_ATOM(paybus, paybus, create_atom, "create")
CAF_ADD_ATOM(paybus, paybus, flush_atom, "flush")
CAF_ADD_ATOM(paybus, paybus, nonce_flush_atom, "nflush")
CAF_ADD_ATOM(paybus, paybus, get_atom, "get")
CAF_ADD_ATOM(paybus, paybus, find_atom, "find")
CAF_ADD_ATOM(paybus, paybus, wake_atom, "wake")
CAF_ADD_ATOM(paybus, paybus, tick_atom, "tick")
CAF_ADD_ATOM(paybus, paybus, drain_atom, "drain")
CAF_ADD_ATOM(paybus, paybus, pay_atom, "pay")
CAF_ADD_ATOM(paybus, paybus, query_atom, "query")
CAF_ADD_ATOM(paybus, paybus, result_atom, "result")
CAF_ADD_ATOM(paybus, paybus, route_atom, "route")
CAF_ADD_ATOM(paybus, paybus, settled_atom, "settled")
CAF_ADD_ATOM(paybus, paybus, resume_atom, "resume")
CAF_ADD_ATOM(paybus, paybus, done_atom, "done")
CAF_ADD_ATOM(paybus, paybus, attach_atom, "attach")
CAF_ADD_ATOM(paybus, paybus, webhook_atom, "webhook")
CAF_ADD_ATOM(paybus, paybus, delivered_atom, "delivered")
CAF_ADD_ATOM(paybus, paybus, reading_atom, "reading")
CAF_ADD_ATOM(paybus, paybus, reconcile_atom, "reconcile")
CAF_ADD_ATOM(paybus, paybus, admin_atom, "admin")
CAF_ADD_ATOM(paybus, paybus, resend_atom, "resend")
CAF_ADD_ATOM(paybus, paybus, inspect_atom, "inspect")
CAF_ADD_ATOM(paybus, paybus, backlog_atom, "backlog")
CAF_ADD_ATOM(paybus, paybus, hello_atom, "hello")
CAF_ADD_ATOM(paybus, paybus, registry_atom, "registry")
CAF_ADD_ATOM(paybus, paybus, status_atom, "status")
CAF_ADD_ATOM(paybus, paybus, form_atom, "form")
CAF_ADD_ATOM(paybus, paybus, slots_atom, "slots")
CAF_ADD_ATOM(paybus, paybus, adopt_atom, "adopt")
CAF_ADD_ATOM(paybus, paybus, serves_atom, "serves")

namespace paybus {

/// The single writer of the local store (detached: it blocks on fsync).
/// Every write of a running bus goes through it: payments, routes, results,
/// nonces, and the database sink's and the notifier's bookkeeping.
using store_actor = caf::typed_actor<
  // Makes each order durable unless its (merchant, order no) exists; answers,
  // in the same order, with the records that are durable now, after the
  // batch holding them is synced. The nonces of the requests that asked are
  // remembered in the same batch.
  caf::replies_to<create_atom, std::vector<payment_record>,
                  std::vector<nonce_accepted>>::with<std::vector<order_stored>>,
  // Records a result and joins it with its order if both exist (kept until
  // the order arrives otherwise); duplicates change nothing.
  caf::replies_to<result_atom, payment_result>::with<result_recorded>,
  // Records the channel a payment is about to be sent to; false if the
  // payment is final already.
  caf::replies_to<route_atom, payment_routed>::with<bool>,
  // Remembers accepted nonces in the next batch (no answer).
  caf::reacts_to<std::vector<nonce_accepted>>,
  // Applies the notifier's outcomes of webhook deliveries in the next batch;
  // true once durable.
  caf::replies_to<webhook_atom, std::vector<webhook_update>>::with<bool>,
  // The database holds the rows of these outbox entries, or holds other
  // rows under their keys (the conflicts, kept apart): the entries go, in
  // the next batch, with the conflicts (no answer; a lost trim only sends
  // rows again, which the database ignores or names again).
  caf::reacts_to<delivered_atom, std::vector<uint64_t>, std::vector<database_conflict>>,
  // The database sink begins a round: it reads everything committed so far,
  // and the next commit that grows the outbox wakes it again.
  caf::reacts_to<reading_atom>,
  // Who to tell: the database sink (a sink_actor, woken when the outbox
  // grows), the notifier (a notifier_actor, told which webhook queues were
  // put to) and the coordinator (a coordinator_actor, told of payments a
  // result made final); any may be null.
  caf::reacts_to<attach_atom, caf::actor, caf::actor, caf::actor>,
  // The admin console's changes: the switches (JSON; "" leaves them) and
  // one entry of the admin family (key and JSON: an audit entry, or the
  // cluster actor's "slots") in one synced batch, after what is queued;
  // true once durable.
  caf::replies_to<admin_atom, std::string, std::string, std::string>::with<bool>,
  // Queues the webhook of a final payment again, due now (same event_id;
  // one waiting is moved to now): true and the event_id, or false and why not.
  caf::replies_to<resend_atom, std::string>::with<bool, std::string>,
  // Internal: commits everything queued so far as one synced WriteBatch.
  caf::reacts_to<flush_atom>,
  // Internal: nonces waited long enough for a commit to ride with.
  caf::reacts_to<nonce_flush_atom>,
  // Internal: housekeeping (forget expired nonces, recover from errors).
  caf::reacts_to<tick_atom>>;

/// Reads payments from the local store (detached: reads may touch disk).
using reader_actor = caf::typed_actor<
  // Looks a payment up by pay_id.
  caf::replies_to<get_atom, std::string>::with<payment_lookup>,
  // Looks a payment up by (merchant id, merchant order no).
  caf::replies_to<find_atom, std::string, std::string>::with<payment_lookup>,
  // Unfinished payments from a pay_id on, at most the given number.
  caf::replies_to<resume_atom, std::string, uint32_t>::with<std::vector<payment_record>>,
  // Everything the store holds of a pay_id, as the admin console shows it
  // (JSON; "" if the store holds no order or result of it).
  caf::replies_to<inspect_atom, std::string>::with<std::string>,
  // What waits (JSON: db, notify, dispatch, oldest_db_seconds,
  // oldest_notify_seconds).
  caf::replies_to<backlog_atom>::with<std::string>>;

/// Feeds the transaction database from the local store's outbox (detached:
/// libpq blocks).
using sink_actor = caf::typed_actor<
  // The store committed new outbox entries (at most one wake is owed: the
  // store sends the next after this sink's next `reading`).
  caf::reacts_to<wake_atom>,
  // Internal: the next delivery round or retry after backoff. Only the tick
  // of the latest generation counts: one scheduled later supersedes it.
  caf::reacts_to<tick_atom, uint64_t>>;

/// One payment channel: signs, sends, verifies, limits concurrency and
/// breaks the circuit after repeated failures.
using channel_actor = caf::typed_actor<
  // Asks the channel to pay.
  caf::replies_to<pay_atom, payment_record>::with<channel_outcome>,
  // Asks the channel what became of a pay_id.
  caf::replies_to<query_atom, std::string>::with<channel_outcome>,
  // Internal: the outcome of request N, from the channel's HTTP thread.
  caf::reacts_to<done_atom, uint64_t, channel_outcome>>;

/// Drives each payment from acceptance to a final result: routes it, sends
/// it, queries unknown outcomes, reroutes only what a channel never took.
using coordinator_actor = caf::typed_actor<
  // New payments, just made durable (routed_channel preset, never sent).
  caf::reacts_to<std::vector<payment_record>>,
  // Payments unfinished at a stop: one with a routed channel may have been
  // sent there, so that channel is asked first.
  caf::reacts_to<resume_atom, std::vector<payment_record>>,
  // A result made a payment final (the store writer says so after the
  // commit; for a result this actor wrote itself it is no news): stop
  // driving it.
  caf::reacts_to<settled_atom, std::string>,
  // Internal: the next due actions.
  caf::reacts_to<tick_atom>>;

/// Delivers merchant notifications from the store's webhook outbox, retrying
/// on a growing schedule.
using notifier_actor = caf::typed_actor<
  // The store committed webhooks to deliver: a round reads those queues now.
  caf::reacts_to<std::vector<webhook_queued>>,
  // Internal: the next delivery round; only the latest generation counts.
  caf::reacts_to<tick_atom, uint64_t>,
  // Internal: delivery N's HTTP status (0: no answer), from the sender's thread.
  caf::reacts_to<done_atom, uint64_t, int32_t>>;

/// Reconciles one channel's statements with the bus (detached: it reads
/// files and the store, and waits for the store writer's repairs). One per
/// channel: two runs of one channel never overlap, runs of two channels may.
using reconciliation_actor = caf::typed_actor<
  // Runs the given UTC day ("YYYY-MM-DD") from a file ("": the channel's
  // signed statement), repairing or not: true and the summary JSON, or
  // false and why the run failed (it then wrote no report).
  caf::replies_to<reconcile_atom, std::string, std::string, bool>::with<bool, std::string>,
  // Internal: the daily run is due, or a failed one is tried again.
  caf::reacts_to<tick_atom>>;

/// One instance as its peers see it (API.md section 9), published on
/// cluster.listen through CAF's middleman. Each request is for what this
/// instance owns (the instance number inside a pay_id); one for another
/// instance's is refused with errc::owner_unavailable, never guessed.
using cluster_actor = caf::typed_actor<
  // A peer introduces itself (its instance number and cluster address);
  // the answer is this instance's number.
  caf::replies_to<hello_atom, int32_t, std::string>::with<int32_t>,
  // Looks a payment up by pay_id, as the reader does.
  caf::replies_to<get_atom, std::string>::with<payment_lookup>,
  // Looks a payment up by (merchant id, merchant order no) in this store.
  caf::replies_to<find_atom, std::string, std::string>::with<payment_lookup>,
  // A channel's notification, verified by the instance it reached: answered
  // once the result is durable here.
  caf::replies_to<result_atom, payment_result>::with<result_recorded>,
  // Everything the store holds of a pay_id, as the admin console shows it.
  caf::replies_to<inspect_atom, std::string>::with<std::string>,
  // A create whose slot this instance owns, from a peer that took the
  // request (authenticated and validated there), with the epoch of the slot
  // table it routed by: decided here (created, existing or conflict) and
  // answered once durable, as a local create is.
  caf::replies_to<create_atom, payment_order, int64_t>::with<order_stored>,
  // The operator's `cluster status`: members, the slot table (JSON).
  caf::replies_to<status_atom>::with<std::string>,
  // The operator's `cluster form`: the slots spread over this instance and
  // the peers up now, epoch 1, unless a table exists: true and the status
  // JSON, or false and why not.
  caf::replies_to<form_atom>::with<bool, std::string>,
  // A peer's slot table (encoded) after a change: taken if newer.
  caf::reacts_to<slots_atom, std::string>,
  // The operator's `cluster adopt INSTANCE STORE_DIR`: this instance opens
  // the dead instance's store and serves its number and slots from then on;
  // true and the status JSON, or false and why not.
  caf::replies_to<adopt_atom, int32_t, std::string>::with<bool, std::string>,
  // A peer says which instance numbers it adopted (comma-separated): they
  // are reached through it from now on.
  caf::reacts_to<serves_atom, std::string>,
  // Internal: connect to the peers not connected yet.
  caf::reacts_to<tick_atom>>;

}  // namespace paybus
