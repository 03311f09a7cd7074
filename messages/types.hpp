#pragma once

// Plain message structs exchanged by paybus actors. No pointers, handles or
// library types; money is int64_t minor units; times are unix milliseconds.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/meta/type_name.hpp>

namespace paybus {

/// Status of a payment as the client sees it. The protocol's words
/// ("PROCESSING", ...) appear only at the edges: the HTTP and webhook
/// bodies, the store's encoding, the database rows.
enum class payment_status : uint8_t { processing, succeeded, failed, closed };

/// The protocol's word for it ("PROCESSING", "SUCCEEDED", "FAILED", "CLOSED").
inline const char* to_string(payment_status status) {
  switch (status) {
    case payment_status::processing:
      return "PROCESSING";
    case payment_status::succeeded:
      return "SUCCEEDED";
    case payment_status::failed:
      return "FAILED";
    case payment_status::closed:
      return "CLOSED";
  }
  return "PROCESSING";
}

/// The status a protocol word names, if any.
inline std::optional<payment_status> parse_payment_status(std::string_view word) {
  for (auto status : {payment_status::processing, payment_status::succeeded, payment_status::failed,
                      payment_status::closed})
    if (word == to_string(status))
      return status;
  return std::nullopt;
}

/// True for SUCCEEDED, FAILED and CLOSED: a status that never changes again.
constexpr bool is_final_status(payment_status status) {
  return status != payment_status::processing;
}

/// Where a payment's result came from.
enum class result_source : uint8_t {
  channel,         // the channel's answer to the pay request
  notify,          // the channel's signed notification
  query,           // the channel's answer to a query (or the bus closing it at expiry)
  reconciliation,  // a reconciliation statement
};

/// Its word in the store, the database and `paybus-replay`.
inline const char* to_string(result_source source) {
  switch (source) {
    case result_source::channel:
      return "channel";
    case result_source::notify:
      return "notify";
    case result_source::query:
      return "query";
    case result_source::reconciliation:
      return "reconciliation";
  }
  return "channel";
}

/// The source a word names, if any.
inline std::optional<result_source> parse_result_source(std::string_view word) {
  for (auto source : {result_source::channel, result_source::notify, result_source::query,
                      result_source::reconciliation})
    if (word == to_string(source))
      return source;
  return std::nullopt;
}

/// JSON (nlohmann, found by argument-dependent lookup) writes a status or a
/// source as its protocol word, never as the enum's number.
template <class Json>
void to_json(Json& json, payment_status status) {
  json = to_string(status);
}

template <class Json>
void to_json(Json& json, result_source source) {
  json = to_string(source);
}

/// Default of the optional `expire_seconds` body field.
constexpr int64_t default_expire_seconds = 900;

/// A validated, authenticated request to create a payment (command).
struct payment_order {
  std::string merchant_id;
  std::string merchant_order_no;
  int64_t amount_minor = 0;
  std::string currency;
  std::string subject;
  std::string channel_id;  // empty: routed
  std::string notify_url;  // empty: merchant default
  int64_t expire_seconds = default_expire_seconds;
};

/// True if two orders carry the same body (omitted fields as defaults).
inline bool same_body(const payment_order& a, const payment_order& b) {
  return a.merchant_id == b.merchant_id && a.merchant_order_no == b.merchant_order_no
         && a.amount_minor == b.amount_minor && a.currency == b.currency && a.subject == b.subject
         && a.channel_id == b.channel_id && a.notify_url == b.notify_url
         && a.expire_seconds == b.expire_seconds;
}

/// A payment as the local store holds it.
struct payment_record {
  std::string pay_id;
  payment_order order;
  int32_t instance_id = 0;
  int64_t created_at_ms = 0;
  payment_status status = payment_status::processing;
  std::string channel_txn_id;
  int64_t finished_at_ms = 0;  // 0: not final yet
  std::string routed_channel;  // the channel it was sent to, durable before sending
  // That channel said it holds the payment (ACCEPTED): a later NOT_FOUND
  // from it contradicts it, and never sends the payment elsewhere or closes it.
  bool held = false;
};

/// A payment's result as a channel (its answer, notification or query) or
/// reconciliation established it (event).
struct payment_result {
  std::string pay_id;
  payment_status status = payment_status::succeeded;  // final: SUCCEEDED | FAILED | CLOSED
  std::string channel_id;
  std::string channel_txn_id;
  int64_t amount_minor = 0;
  int64_t finished_at_ms = 0;
  result_source source = result_source::channel;
  bool flagged = false;  // its amount differs from the order's: kept, not joined
};

/// The store's answer to a result: whether it changed anything, and whether
/// the payment is now final (joined with its order).
struct result_recorded {
  bool changed = false;
  bool joined = false;
  payment_result result;
};

/// A decision to send a payment to a channel (command), or, `held`, that
/// the channel it is routed to said it holds it.
struct payment_routed {
  std::string pay_id;
  std::string channel_id;
  bool held = false;
};

/// What a channel said about a payment.
enum class channel_status : uint8_t {
  succeeded,    // paid: final
  failed,       // not paid: final
  accepted,     // taken, the result comes later (a notification, or ask)
  not_found,    // a query's answer: the channel does not hold the pay_id
  refused,      // it declined to take it: safe elsewhere
  unavailable,  // not sent: breaker open, queue full, connection refused
  unknown,      // timeout, 5xx, broken connection, bad signature: ask before anything else
};

/// The protocol's word for it ("SUCCEEDED", ..., "UNKNOWN").
inline const char* to_string(channel_status status) {
  switch (status) {
    case channel_status::succeeded:
      return "SUCCEEDED";
    case channel_status::failed:
      return "FAILED";
    case channel_status::accepted:
      return "ACCEPTED";
    case channel_status::not_found:
      return "NOT_FOUND";
    case channel_status::refused:
      return "REFUSED";
    case channel_status::unavailable:
      return "UNAVAILABLE";
    case channel_status::unknown:
      return "UNKNOWN";
  }
  return "UNKNOWN";
}

/// The status a protocol word names, if any.
inline std::optional<channel_status> parse_channel_status(std::string_view word) {
  for (auto status : {channel_status::succeeded, channel_status::failed, channel_status::accepted,
                      channel_status::not_found, channel_status::refused,
                      channel_status::unavailable, channel_status::unknown})
    if (word == to_string(status))
      return status;
  return std::nullopt;
}

template <class Json>
void to_json(Json& json, channel_status status) {
  json = to_string(status);
}

/// What a channel said about a payment (event).
struct channel_outcome {
  std::string pay_id;
  std::string channel_id;
  channel_status status = channel_status::unknown;
  std::string channel_txn_id;
  std::string reason;
};

/// How the bus answers a create request: created (202), the same order
/// again (200), or its merchant_order_no with another body (409).
enum class admission : uint8_t { created = 0, existing = 1, conflict = 2 };

/// The store's answer to a create: the record now durable, whether this
/// request created it or found it there already, and so how it is answered
/// (event).
struct order_stored {
  bool created = false;
  admission outcome = admission::created;
  payment_record record;
};

/// A payment looked up in the local store.
struct payment_lookup {
  bool found = false;
  payment_record record;
};

/// A nonce accepted for a merchant, to be remembered across restarts.
struct nonce_accepted {
  std::string merchant_id;
  std::string nonce;
  int64_t seen_at_ms = 0;
};

/// One attempt to deliver a merchant notification (command).
struct webhook_delivery {
  std::string event_id;
  std::string merchant_id;
  std::string url;
  std::string body;
};

/// The notifier's word on one webhook outbox entry it read, for the store
/// writer to apply (command): gone (delivered or given up), or tried again at
/// `next_due_ms` (after a failed delivery, or, not `attempted`, when it had
/// nowhere to go).
struct webhook_update {
  std::string merchant_id;
  std::string event_id;
  std::string pay_id;
  int64_t attempt = 0;  // deliveries tried before this one
  int64_t first_due_ms = 0;
  int64_t due_ms = 0;       // where the entry is queued now
  int64_t next_due_ms = 0;  // 0: gone; else queued again then
  bool attempted = true;    // queued again after a delivery: one attempt more
};

/// The store writer queued webhooks of a merchant, the earliest due then
/// (event): the notifier's next round reads that queue from there.
struct webhook_queued {
  std::string merchant_id;
  int64_t due_ms = 0;
};

/// A row the transaction database holds otherwise than the local store
/// under the same key (pay_id, or merchant and merchant_order_no): kept apart
/// in the store, never silently dropped (event; JSON texts of both rows).
struct database_conflict {
  std::string table;  // payment_orders | payment_results
  std::string pay_id;
  std::string ours;    // the row the bus would have written
  std::string theirs;  // what the table holds under its keys
  int64_t found_at_ms = 0;
};

/// A command of the admin console (API.md section 8), as typed. Over mutual
/// TLS it carries the console's certificate (PEM) and a signature by its key
/// of crypto::admin_signed_text(at_ms, words): the bus names the
/// certificate's subject as who made the change. Crosses the network:
/// registered by this name in paybusd and paybus-admin.
struct admin_request {
  std::vector<std::string> words;
  std::string certificate;
  std::string signature;
  int64_t at_ms = 0;
};

/// The bus's answer: the command's JSON document (API.md section 8), or
/// `failed` and {"error": {"code", "message"}}.
struct admin_reply {
  bool failed = false;
  std::string json;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, admin_request& x) {
  return f(caf::meta::type_name("admin_request"), x.words, x.certificate, x.signature, x.at_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, admin_reply& x) {
  return f(caf::meta::type_name("admin_reply"), x.failed, x.json);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, database_conflict& x) {
  return f(caf::meta::type_name("database_conflict"), x.table, x.pay_id, x.ours, x.theirs,
           x.found_at_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, webhook_update& x) {
  return f(caf::meta::type_name("webhook_update"), x.merchant_id, x.event_id, x.pay_id, x.attempt,
           x.first_due_ms, x.due_ms, x.next_due_ms, x.attempted);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, webhook_queued& x) {
  return f(caf::meta::type_name("webhook_queued"), x.merchant_id, x.due_ms);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, webhook_delivery& x) {
  return f(caf::meta::type_name("webhook_delivery"), x.event_id, x.merchant_id, x.url, x.body);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_order& x) {
  return f(caf::meta::type_name("payment_order"), x.merchant_id, x.merchant_order_no,
           x.amount_minor, x.currency, x.subject, x.channel_id, x.notify_url, x.expire_seconds);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_record& x) {
  return f(caf::meta::type_name("payment_record"), x.pay_id, x.order, x.instance_id,
           x.created_at_ms, x.status, x.channel_txn_id, x.finished_at_ms, x.routed_channel, x.held);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_result& x) {
  return f(caf::meta::type_name("payment_result"), x.pay_id, x.status, x.channel_id,
           x.channel_txn_id, x.amount_minor, x.finished_at_ms, x.source, x.flagged);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, result_recorded& x) {
  return f(caf::meta::type_name("result_recorded"), x.changed, x.joined, x.result);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_routed& x) {
  return f(caf::meta::type_name("payment_routed"), x.pay_id, x.channel_id, x.held);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, channel_outcome& x) {
  return f(caf::meta::type_name("channel_outcome"), x.pay_id, x.channel_id, x.status,
           x.channel_txn_id, x.reason);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, order_stored& x) {
  return f(caf::meta::type_name("order_stored"), x.created, x.outcome, x.record);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, payment_lookup& x) {
  return f(caf::meta::type_name("payment_lookup"), x.found, x.record);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, nonce_accepted& x) {
  return f(caf::meta::type_name("nonce_accepted"), x.merchant_id, x.nonce, x.seen_at_ms);
}

}  // namespace paybus
