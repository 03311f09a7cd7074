#include "gateway/ingress.hpp"

#include <deque>
#include <functional>
#include <optional>
#include <unordered_map>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <caf/actor_system.hpp>
#include <caf/io/broker.hpp>
#include <caf/io/doorman.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/system_messages.hpp>
#include <caf/sec.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/cluster/cluster_directory.hpp"
#include "actors/cluster/slot_table.hpp"
#include "actors/payment/settlement.hpp"
#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "common/pay_id.hpp"
#include "common/text.hpp"
#include "common/thread_name.hpp"
#include "gateway/render.hpp"
#include "gateway/requests.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

namespace {

constexpr const char* json_type = "application/json";
constexpr int64_t tick_interval_ms = 250;
constexpr size_t max_creates_per_message = 256;

struct pending_response {
  bool ready = false;
  bool close_after = false;
  int status = 0;
  int64_t started_us = 0;
  std::string bytes;
};

struct connection {
  explicit connection(http_limits limits) : parser(limits) {
  }

  http_request_parser parser;
  std::deque<pending_response> responses;  // in request order
  uint64_t first_sequence = 0;             // sequence of responses.front()
  int64_t last_activity_ms = 0;
  int64_t partial_since_ms = 0;  // a request is arriving since
  bool closing = false;          // no more requests are read
  bool caf_writes = false;       // answers go through CAF's write buffer
  bool held = false;             // its requests wait until CAF wrote all
};

/// A request handed to another actor, waiting for its answer.
struct call {
  caf::io::connection_handle hdl;
  uint64_t sequence = 0;
  bool keep_alive = true;
  bool reconciliation = false;  // late: the run goes on, its report comes when it is done
};

struct ingress_state {
  std::shared_ptr<const ingress_context> context;
  std::unordered_map<caf::io::connection_handle, std::unique_ptr<connection>> connections;
  std::unique_ptr<nonce_cache> nonces;
  caf::io::accept_handle listener;
  // Calls in flight and their deadlines (one timeout for all, so the deque
  // is in deadline order). Cheaper than a CAF request timeout per call.
  std::unordered_map<uint64_t, call> calls;
  std::deque<std::pair<int64_t, uint64_t>> call_deadlines;
  uint64_t next_call_id = 1;
  std::vector<order_shard> shards;
  // Creates of this burst of input, to go to the store in one message.
  std::vector<struct pending_create> creates;
  std::vector<payment_record> create_records;
  std::vector<nonce_accepted> create_nonces;
  bool creates_flush_queued = false;
  bool draining = false;
  bool handles_checked = false;      // on the first connection
  bool handles_are_sockets = false;  // answers are sent on the handle's socket
  // A connection's handle is its socket's number, which the next connection
  // may get as soon as this one closes; a late answer to the old one must
  // not take the new one's slot. So each connection numbers its responses
  // from a base of its own, 2^32 apart: an old connection's sequences are
  // all below a newer one's first.
  uint64_t next_sequence_base = 0;

  // With peers: the slot table as last read from ctx.slots.
  slot_table slots;
  uint64_t slots_version = 0;
};

using ingress_broker = caf::io::stateful_broker<ingress_state>;

/// How long a request to the store or the reader may take. The client is
/// answered at `request_timeout` by the call deadlines (expire_calls); the
/// request's own timeout, a little later, only ends its wait.
std::chrono::milliseconds answer_timeout(const ingress_context& context) {
  return context.request_timeout + std::chrono::seconds{1};
}

int64_t now_us() {
  return monotonic_now_ms() * 1000;
}

std::string error_response(int status, std::string_view code, std::string_view message,
                           bool keep_alive, std::string_view extra_headers = {}) {
  return http_response(status, json_type, error_json(code, message), keep_alive, extra_headers);
}

/// Hands `bytes` to the connection's socket. CAF's own write path registers
/// the socket for EPOLLOUT, writes when the multiplexer next wakes and
/// unregisters it: two epoll_ctl calls and a wake-up an answer. So an answer
/// is sent here with one send(): CAF names a connection by its socket
/// (`conn_hdl_from_socket`), and nothing of this connection waits in CAF's
/// buffer until the first send the socket does not take whole. From then on
/// (a client that does not read, a full socket buffer, an error) every answer
/// of that connection goes through CAF, in order, and CAF reports the errors;
/// and its further requests are not read until CAF has written everything
/// (`on_written`): a client that sends and never reads cannot make the bus
/// hold more than the answers already asked for (at most http.max_pipeline).
void write_answer(ingress_broker* self, caf::io::connection_handle hdl, connection& conn,
                  const std::string& bytes) {
  size_t sent = 0;
  if (!conn.caf_writes) {
    auto fd = static_cast<int>(hdl.id());
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == static_cast<ssize_t>(bytes.size()))
      return;
    sent = n > 0 ? static_cast<size_t>(n) : 0;
    conn.caf_writes = true;
    conn.held = true;
    self->ack_writes(hdl, true);
    self->halt(hdl);
  }
  self->write(hdl, bytes.size() - sent, bytes.data() + sent);
  self->flush(hdl);
}

/// CAF wrote some of a held connection's answers. Once nothing remains, its
/// answers go straight to the socket again and its requests are read again.
void on_written(ingress_broker* self, const caf::io::data_transferred_msg& msg) {
  auto& st = self->state;
  auto found = st.connections.find(msg.handle);
  if (found == st.connections.end())
    return;
  auto& conn = *found->second;
  conn.last_activity_ms = monotonic_now_ms();
  if (!conn.held || msg.remaining > 0)
    return;
  conn.held = false;
  conn.caf_writes = false;
  self->ack_writes(msg.handle, false);
  self->trigger(msg.handle);
}

/// True when `hdl` names the socket its id says (CAF's default multiplexer
/// makes a connection's handle from its socket): the peer the kernel gives
/// for that descriptor is the one CAF gives for the handle. Checked on the
/// first connection (it is how the multiplexer makes every handle), so that
/// an answer is never sent on another socket; if it fails, every
/// connection is answered through CAF.
/// Nothing when it cannot tell (the client is already gone).
std::optional<bool> handle_is_socket(ingress_broker* self, caf::io::connection_handle hdl) {
  sockaddr_storage address{};
  socklen_t size = sizeof(address);
  auto fd = static_cast<int>(hdl.id());
  if (static_cast<int64_t>(fd) != hdl.id())
    return false;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&address), &size) != 0)
    return std::nullopt;
  char text[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (address.ss_family == AF_INET) {
    auto* v4 = reinterpret_cast<const sockaddr_in*>(&address);
    inet_ntop(AF_INET, &v4->sin_addr, text, sizeof(text));
    port = ntohs(v4->sin_port);
  } else if (address.ss_family == AF_INET6) {
    auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address);
    inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof(text));
    port = ntohs(v6->sin6_port);
  } else {
    return false;
  }
  auto caf_address = self->remote_addr(hdl);
  if (caf_address.empty())
    return std::nullopt;
  return port == self->remote_port(hdl) && text == caf_address;
}

/// Writes every ready response at the front of the queue, in order, at
/// once (a pipelining client's answers in one send).
void flush_ready(ingress_broker* self, caf::io::connection_handle hdl) {
  auto& st = self->state;
  auto found = st.connections.find(hdl);
  if (found == st.connections.end())
    return;
  auto& conn = *found->second;
  std::string batch;
  bool close_after = false;
  while (!close_after && !conn.responses.empty() && conn.responses.front().ready) {
    auto& response = conn.responses.front();
    if (batch.empty())
      batch.swap(response.bytes);
    else
      batch += response.bytes;
    st.context->figures->count_response(response.status, now_us() - response.started_us);
    close_after = response.close_after;
    conn.responses.pop_front();
    ++conn.first_sequence;
  }
  if (!batch.empty())
    write_answer(self, hdl, conn, batch);
  if (close_after) {
    self->close(hdl);  // after what it was given: a FIN behind the answer
    st.connections.erase(found);
    st.context->figures->http_connections = static_cast<int64_t>(st.connections.size());
    return;
  }
  conn.last_activity_ms = monotonic_now_ms();
}

/// Fills the response slot `sequence` of connection `hdl`, if both still exist.
void complete(ingress_broker* self, caf::io::connection_handle hdl, uint64_t sequence, int status,
              std::string bytes, bool close_after) {
  auto& st = self->state;
  auto found = st.connections.find(hdl);
  if (found == st.connections.end())
    return;
  auto& conn = *found->second;
  if (sequence < conn.first_sequence || sequence - conn.first_sequence >= conn.responses.size())
    return;
  auto& slot = conn.responses[sequence - conn.first_sequence];
  slot.ready = true;
  slot.status = status;
  slot.bytes = std::move(bytes);
  slot.close_after = slot.close_after || close_after;
  flush_ready(self, hdl);
}

/// Answers a call once: the first of its reply and its timeout wins.
struct async_reply {
  ingress_broker* self;
  uint64_t id;

  void operator()(int status, std::string body, std::string_view extra_headers = {}) const {
    auto& st = self->state;
    auto found = st.calls.find(id);
    if (found == st.calls.end())
      return;  // timed out and answered already
    call answered = found->second;
    st.calls.erase(found);
    st.context->figures->http_inflight = static_cast<int64_t>(st.calls.size());
    bool keep = answered.keep_alive && !st.draining;
    complete(self, answered.hdl, answered.sequence, status,
             http_response(status, json_type, body, keep, extra_headers), !keep);
  }
};

async_reply start_call(ingress_broker* self, caf::io::connection_handle hdl, uint64_t sequence,
                       bool keep_alive) {
  auto& st = self->state;
  auto id = st.next_call_id++;
  st.calls.emplace(id, call{hdl, sequence, keep_alive});
  st.call_deadlines.emplace_back(monotonic_now_ms() + st.context->request_timeout.count(), id);
  st.context->figures->http_inflight = static_cast<int64_t>(st.calls.size());
  return async_reply{self, id};
}

void expire_calls(ingress_broker* self) {
  auto& st = self->state;
  auto now = monotonic_now_ms();
  while (!st.call_deadlines.empty() && st.call_deadlines.front().first <= now) {
    async_reply reply{self, st.call_deadlines.front().second};
    st.call_deadlines.pop_front();
    auto found = st.calls.find(reply.id);
    if (found != st.calls.end() && found->second.reconciliation)
      reply(503, error_json("reconciliation_running",
                            "the run goes on past http.request_timeout_ms; its report is "
                            "written when it is done (see the log)"));
    else
      reply(503,
            error_json("store_unavailable", "the local store did not answer in time; retry with "
                                            "the same merchant_order_no"));
  }
}

/// A create waiting for the store: what the request asked (compared with
/// what the store holds when the order existed) and where to answer.
struct pending_create {
  payment_order order;
  async_reply reply;
};

void answer_store_error(const async_reply& reply, const caf::error& error);

/// Answers a create as settlement decided it, against the request's body.
std::pair<int, std::string> create_answer(metrics& figures, const order_stored& stored) {
  switch (stored.outcome) {
    case admission::created:
      figures.payments_accepted_total.fetch_add(1, std::memory_order_relaxed);
      return {202, render_payment(stored.record)};
    case admission::existing:
      figures.payments_idempotent_total.fetch_add(1, std::memory_order_relaxed);
      return {200, render_payment(stored.record)};
    case admission::conflict:
      break;
  }
  return {409, error_json("idempotency_conflict", "merchant_order_no "
                                                    + stored.record.order.merchant_order_no
                                                    + " was used with a different request body")};
}

void answer_create(metrics& figures, const async_reply& reply, const order_stored& stored) {
  auto [status, body] = create_answer(figures, stored);
  reply(status, std::move(body));
}

/// Answers each create of a batch from the store's records.
void answer_creates(ingress_broker* self, std::vector<pending_create>& batch,
                    std::vector<order_stored>& results) {
  auto& figures = *self->state.context->figures;
  for (size_t i = 0; i < batch.size() && i < results.size(); ++i)
    answer_create(figures, batch[i].reply, results[i]);
  for (size_t i = results.size(); i < batch.size(); ++i)
    answer_store_error(batch[i].reply, caf::make_error(errc::store_unavailable));
  std::vector<payment_record> to_pay;
  for (const auto& stored : results)
    if (stored.created && stored.record.status == payment_status::processing)
      to_pay.push_back(stored.record);
  if (!to_pay.empty())
    self->send(self->state.context->coordinator, std::move(to_pay));
}

/// Sends the creates queued in this burst to the store as one message.
/// Their nonces go with them: remembered in the batch that holds the orders.
void flush_creates(ingress_broker* self) {
  auto& st = self->state;
  st.creates_flush_queued = false;
  if (st.creates.empty())
    return;
  auto batch = std::make_shared<std::vector<pending_create>>(std::move(st.creates));
  st.creates.clear();
  auto records = std::move(st.create_records);
  st.create_records.clear();
  auto nonces = std::move(st.create_nonces);
  st.create_nonces.clear();
  // No CAF timeout on this one (a clock-thread entry and a stale timeout
  // message to this broker per burst, on the bus's busiest thread): each
  // create's own call deadline answers its client at request_timeout
  // (expire_calls), and the writer answers every create it takes, or, gone,
  // has CAF answer for it.
  self
    ->request(st.context->store, caf::infinite, create_atom::value, std::move(records),
              std::move(nonces))
    .then([=](std::vector<order_stored>& results) { answer_creates(self, *batch, results); },
          [=](caf::error& error) {
            for (auto& create : *batch)
              answer_store_error(create.reply, error);
          });
}

/// Queues a create: its pay_id and route from the order's shard now, and
/// everything queued in this burst of input goes to the store in one message
/// (a flush sent to ourselves lands behind the burst).
void queue_create(ingress_broker* self, payment_order order, async_reply reply,
                  nonce_accepted nonce) {
  auto& st = self->state;
  auto key = idempotency_key(order.merchant_id, order.merchant_order_no);
  auto& shard = st.shards[std::hash<std::string>{}(key) % st.shards.size()];
  st.create_records.push_back(shard.issue(order, nonce.seen_at_ms));
  st.create_nonces.push_back(std::move(nonce));
  st.creates.push_back(pending_create{std::move(order), std::move(reply)});
  if (st.creates.size() >= max_creates_per_message) {
    flush_creates(self);
  } else if (!st.creates_flush_queued) {
    st.creates_flush_queued = true;
    if (st.context->gather.count() > 0)
      self->delayed_send(self, st.context->gather, flush_atom::value);
    else
      self->send(self, flush_atom::value);
  }
}

void answer_store_error(const async_reply& reply, const caf::error& error) {
  if (error == errc::overloaded) {
    reply(429, error_json("overloaded", "the bus is at capacity, retry later"),
          "Retry-After: 1\r\n");
  } else {
    reply(503, error_json("store_unavailable", "the local store cannot write; retry with the same "
                                               "merchant_order_no"));
  }
}

std::string owner_unavailable_message(int32_t instance) {
  return "instance " + std::to_string(instance)
         + ", which owns this, cannot be reached now; retry later";
}

/// From a call's answer (asynchronous); one known at once goes through
/// request_slot::error, as every answer given inside dispatch must: a reply
/// made there can close the connection dispatch is still reading.
void answer_owner_unavailable(const async_reply& reply, int32_t instance) {
  reply(503, error_json("owner_unavailable", owner_unavailable_message(instance)),
        "Retry-After: 1\r\n");
}

/// The peer serving another instance's pay_id: nullopt if this instance
/// serves it (or is alone), else the owner's number and its handle (null
/// while it is down).
std::optional<std::pair<int32_t, cluster_actor>> owner_elsewhere(const ingress_context& ctx,
                                                                 const std::string& pay_id) {
  if (ctx.cluster == nullptr)
    return std::nullopt;
  auto parts = parse_pay_id(pay_id);
  if (!parts || ctx.cluster->serves(parts->instance_id))
    return std::nullopt;
  return std::pair{parts->instance_id, ctx.cluster->owner(parts->instance_id)};
}

/// The reader and writer of the store that holds a pay_id this process
/// serves: its own, or an adopted instance's.
reader_actor reader_for(const ingress_context& ctx, const std::string& pay_id) {
  auto adopted = ctx.cluster != nullptr ? ctx.cluster->adopted_for(pay_id) : std::nullopt;
  return adopted ? adopted->reader : ctx.reader;
}

store_actor writer_for(const ingress_context& ctx, const std::string& pay_id) {
  auto adopted = ctx.cluster != nullptr ? ctx.cluster->adopted_for(pay_id) : std::nullopt;
  return adopted ? adopted->writer : ctx.store;
}

/// Where the answer to one request goes: its slot in its connection's
/// queue of responses, filled now (`ready`) or by a call (`start`).
struct request_slot {
  ingress_broker* self;
  caf::io::connection_handle hdl;
  connection& conn;
  uint64_t sequence;
  bool keep_alive;

  void ready(int status, std::string body, std::string_view extra_headers = {},
             std::string_view content_type = json_type) const {
    auto& slot = conn.responses.back();
    slot.ready = true;
    slot.status = status;
    slot.close_after = !keep_alive;
    slot.bytes = http_response(status, content_type, body, keep_alive, extra_headers);
  }

  void error(int status, std::string_view code, std::string_view message,
             std::string_view extra_headers = {}) const {
    ready(status, error_json(code, message), extra_headers);
  }

  void overloaded(std::string_view why = "the bus is at capacity, retry later") const {
    error(429, "overloaded", why, "Retry-After: 1\r\n");
  }

  async_reply start() const {
    return start_call(self, hdl, sequence, keep_alive);
  }
};

void owner_unavailable(const request_slot& slot, int32_t instance) {
  slot.error(503, "owner_unavailable", owner_unavailable_message(instance), "Retry-After: 1\r\n");
}

/// GET /healthz, /readyz, /metrics.
void serve_operations(const request_slot& slot, route_kind kind) {
  auto& st = slot.self->state;
  switch (kind) {
    case route_kind::healthz:
      return slot.ready(200, "{\"status\":\"ok\"}");
    case route_kind::readyz:
      if (st.draining)
        return slot.ready(503, "{\"status\":\"draining\"}");
      if (st.context->figures->store_up.load() == 0)
        return slot.ready(503, "{\"status\":\"store_unavailable\"}");
      if (st.context->cluster != nullptr
          && (st.context->slots->version() == 0 || !st.context->slots->confirmed()))
        return slot.ready(503, "{\"status\":\"no_slot_table\"}");
      return slot.ready(200, "{\"status\":\"ready\"}");
    default:
      return slot.ready(200, st.context->figures->render_prometheus(), {},
                        "text/plain; version=0.0.4");
  }
}

/// POST /v1/channels/{id}/notify: a channel's signed result notification,
/// answered 200 once the result is durable.
void serve_notification(const request_slot& slot, const http_request& request,
                        const std::string& channel_id) {
  auto* self = slot.self;
  auto& st = self->state;
  const auto& ctx = *st.context;
  auto key = ctx.channel_keys.find(channel_id);
  if (key == ctx.channel_keys.end())
    return slot.error(404, "not_found", "no such channel");
  auto now_ms = unix_now_ms();
  if (request.channel != channel_id || request.auth_duplicated
      || !verify_rsa_message(key->second.get(), "POST", request.target, request.timestamp,
                             request.nonce, request.signature, request.body, now_ms,
                             ctx.timestamp_window_seconds))
    return slot.error(401, "unauthenticated", "missing, malformed or invalid channel signature");
  // Remembered for the whole timestamp window, as a merchant's are: the
  // last seconds' in memory, the rest in the store (kept there below).
  auto principal = "channel:" + channel_id;
  if (st.nonces->seen(principal, request.nonce))
    return slot.error(401, "replayed_request", "this nonce was already used");
  auto stored = ctx.store_reads->nonce_seen(principal, request.nonce, now_ms);
  if (!stored)
    return slot.error(503, "store_unavailable", "the local store cannot be read");
  if (*stored)
    return slot.error(401, "replayed_request", "this nonce was already used");
  st.nonces->remember(principal, request.nonce, now_ms);
  payment_result result;
  if (auto problem = parse_notification(request.body, channel_id, now_ms, result))
    return slot.error(400, "invalid_field", *problem);
  if (static_cast<int64_t>(st.calls.size()) >= ctx.max_inflight)
    return slot.overloaded();
  ctx.figures->channel_notifications_total.fetch_add(1, std::memory_order_relaxed);
  auto forward = owner_elsewhere(ctx, result.pay_id);
  if (forward && !forward->second)
    return owner_unavailable(slot, forward->first);
  auto reply = slot.start();
  nonce_accepted nonce{principal, request.nonce, now_ms};
  if (auto owner = forward) {
    // Another instance's payment: acknowledged once the owner holds it.
    auto instance = owner->first;
    self->request(owner->second, ctx.forward_timeout, result_atom::value, std::move(result))
      .then(
        [=](result_recorded&) {
          self->send(self->state.context->store, std::vector<nonce_accepted>{nonce});
          reply(200, "{\"received\":true}");
        },
        [=](caf::error& error) {
          if (error == errc::store_unavailable || error == errc::overloaded)
            answer_store_error(reply, error);
          else
            answer_owner_unavailable(reply, instance);
        });
    return;
  }
  auto writer = writer_for(ctx, result.pay_id);
  self->request(writer, answer_timeout(ctx), result_atom::value, std::move(result))
    .then(
      [=](result_recorded&) {
        // Durable. The store writer tells the coordinator itself when
        // this result made the payment final.
        self->send(self->state.context->store, std::vector<nonce_accepted>{nonce});
        reply(200, "{\"received\":true}");
      },
      [=](caf::error& error) { answer_store_error(reply, error); });
}

/// POST /v1/admin/reconcile {"channel", "date", "file"?, "repair"?}: runs a
/// channel's reconciliation and answers with its summary (200) or why it
/// failed (502). Only from a loopback address, signed with the bus's own
/// key (signing.private_key): the operator's until the admin console.
void serve_reconcile(const request_slot& slot, const http_request& request) {
  auto* self = slot.self;
  auto& st = self->state;
  const auto& ctx = *st.context;
  auto peer = self->remote_addr(slot.hdl);
  if (peer != "127.0.0.1" && peer != "::1" && peer != "::ffff:127.0.0.1")
    return slot.error(403, "forbidden", "reconciliation is run from this machine only");
  auto now_ms = unix_now_ms();
  if (!ctx.bus_key || request.auth_duplicated
      || !verify_rsa_message(ctx.bus_key.get(), "POST", request.target, request.timestamp,
                             request.nonce, request.signature, request.body, now_ms,
                             ctx.timestamp_window_seconds))
    return slot.error(401, "unauthenticated",
                      "missing, malformed or invalid signature (sign with the bus's own key)");
  if (st.nonces->seen("admin", request.nonce))
    return slot.error(401, "replayed_request", "this nonce was already used");
  st.nonces->remember("admin", request.nonce, now_ms);
  auto body = nlohmann::json::parse(request.body, nullptr, false);
  auto text = [&](const char* name) -> std::optional<std::string> {
    if (!body.is_object() || !body.contains(name) || !body[name].is_string())
      return std::nullopt;
    return body[name].get<std::string>();
  };
  auto channel = text("channel");
  auto date = text("date");
  auto file = text("file").value_or("");
  int64_t day_start = 0;
  if (!channel || !date || !parse_utc_day(*date, day_start))
    return slot.error(
      400, "invalid_field",
      "expected {\"channel\": ID, \"date\": \"YYYY-MM-DD\"} (and \"file\", \"repair\")");
  if (!file.empty() && file.front() != '/')
    return slot.error(400, "invalid_field", "file must be an absolute path");
  bool repair = true;
  if (body.contains("repair")) {
    if (!body["repair"].is_boolean())
      return slot.error(400, "invalid_field", "repair must be true or false");
    repair = body["repair"].get<bool>();
  }
  auto reconciler = ctx.reconcilers.find(*channel);
  if (reconciler == ctx.reconcilers.end())
    return slot.error(404, "not_found", "no such channel");
  auto reply = slot.start();
  st.calls.at(reply.id).reconciliation = true;
  self
    ->request(reconciler->second, std::chrono::seconds{86400}, reconcile_atom::value, *date, file,
              repair)
    .then(
      [=](bool ok, const std::string& answer) {
        if (ok)
          reply(200, answer);
        else
          reply(502, error_json("reconciliation_failed", answer));
      },
      [=](caf::error& error) {
        reply(503, error_json("reconciliation_unavailable", caf::to_string(error)));
      });
}

/// The merchant a /v1/payments* request is signed by, or nothing once it
/// has been answered (401, or 503 when the store cannot be read).
const merchant_credentials* authenticate_merchant(const request_slot& slot,
                                                  const http_request& request, int64_t now_ms) {
  auto& st = slot.self->state;
  const auto& ctx = *st.context;
  auth_headers headers;
  headers.principal = request.merchant;
  headers.timestamp = request.timestamp;
  headers.nonce = request.nonce;
  headers.signature = request.signature;
  headers.duplicated = request.auth_duplicated;
  const merchant_credentials* merchant = nullptr;
  bool store_failed = false;
  // Recent nonces from memory; older ones from the store, read here on the
  // ingress thread: a point read served by the memtable's bloom filter and
  // the block cache, cheaper than a hop to the reader and back per request.
  auto nonce_seen = [&](std::string_view merchant_id, std::string_view nonce) {
    if (st.nonces->seen(merchant_id, nonce))
      return true;
    auto stored = ctx.store_reads->nonce_seen(merchant_id, nonce, now_ms);
    store_failed = !stored;
    return stored.value_or(true);
  };
  auto failure = authenticate(ctx.merchants, headers, request.method, request.target, request.body,
                              now_ms, ctx.timestamp_window_seconds, nonce_seen, &merchant);
  if (store_failed) {
    slot.error(503, "store_unavailable", "the local store cannot be read");
    return nullptr;
  }
  if (failure != auth_failure::none) {
    const char* message = failure == auth_failure::stale_timestamp
                            ? "X-Paybus-Timestamp is too far from the bus's clock"
                          : failure == auth_failure::replayed_request
                            ? "this nonce was already used"
                            : "missing, malformed or invalid authentication";
    slot.error(401, to_code(failure), message);
    return nullptr;
  }
  st.nonces->remember(merchant->id, request.nonce, now_ms);
  return merchant;
}

/// A create for a slot another instance owns: sent to it, answered as it
/// decided, once durable there.
void forward_create(const request_slot& slot, int32_t owner, payment_order order,
                    nonce_accepted nonce) {
  auto* self = slot.self;
  auto& st = self->state;
  auto handle = st.context->cluster->owner(owner);
  if (!handle)
    return owner_unavailable(slot, owner);
  auto reply = slot.start();
  self
    ->request(handle, st.context->forward_timeout, create_atom::value, std::move(order),
              st.slots.epoch)
    .then(
      [=](order_stored& stored) {
        self->send(self->state.context->store, std::vector<nonce_accepted>{nonce});
        answer_create(*self->state.context->figures, reply, stored);
      },
      [=](caf::error& error) {
        if (error == errc::store_unavailable || error == errc::overloaded)
          answer_store_error(reply, error);
        else
          answer_owner_unavailable(reply, owner);
      });
}

/// POST /v1/payments, GET /v1/payments?merchant_order_no=, GET /v1/payments/{pay_id}.
void serve_payments(const request_slot& slot, const http_request& request, const route& to) {
  auto* self = slot.self;
  auto& st = self->state;
  const auto& ctx = *st.context;
  auto now_ms = unix_now_ms();
  const auto* merchant = authenticate_merchant(slot, request, now_ms);
  if (merchant == nullptr)
    return;
  if (static_cast<int64_t>(st.calls.size()) >= ctx.max_inflight)
    return slot.overloaded();
  slot.conn.responses.back().close_after = !slot.keep_alive;

  if (request.method == "POST") {
    payment_order order;
    if (auto error = parse_payment_order(request.body, merchant->id, ctx.channels, ctx.orders,
                                         order))
      return slot.error(error->status, error->code, error->message);
    nonce_accepted nonce{merchant->id, request.nonce, now_ms};
    if (ctx.cluster != nullptr) {
      // With peers, the slot's owner decides the order, once.
      if (ctx.slots->version() != st.slots_version) {
        st.slots_version = ctx.slots->version();
        st.slots = ctx.slots->get();
      }
      if (!st.slots.known())
        return slot.error(503, "owner_unavailable",
                          "this instance has not read the cluster's slot table yet; retry later");
      auto owner = st.slots.owner(slot_of(order.merchant_id, order.merchant_order_no));
      if (!ctx.cluster->serves(owner))
        return forward_create(slot, owner, std::move(order), std::move(nonce));
      // Its own slot by a table from the local store alone: it may be behind
      // (this instance adopted elsewhere while it was down). Not decided yet.
      if (!ctx.slots->confirmed())
        return slot.error(503, "owner_unavailable",
                          "this instance's slot table is not confirmed by the database or a "
                          "peer yet; retry later");
      // A slot adopted with its store: an order made there is answered from it.
      bool failed = false;
      if (auto found = ctx.cluster->find_adopted(order.merchant_id, order.merchant_order_no,
                                                 failed)) {
        self->send(ctx.store, std::vector<nonce_accepted>{nonce});
        auto [status, body] = create_answer(
          *ctx.figures,
          order_stored{false, decide_admission(false, found->order, order), std::move(*found)});
        return slot.ready(status, std::move(body));
      }
      if (failed)
        return slot.error(503, "store_unavailable", "an adopted local store cannot be read");
    }
    queue_create(self, std::move(order), slot.start(), std::move(nonce));
    return;
  }

  std::string pay_id;
  std::optional<std::string> order_no;
  if (to.kind == route_kind::payment) {
    pay_id = std::string{to.pay_id};
    if (!valid_pay_id_text(pay_id))
      return slot.error(404, "not_found", "no such payment");
  } else {
    order_no = query_parameter(to.query, "merchant_order_no");
    if (!order_no)
      return slot.error(400, "missing_field", "merchant_order_no is required");
    if (!valid_merchant_order_no(*order_no))
      return slot.error(400, "invalid_field",
                        "merchant_order_no must be 1 to 64 of [A-Za-z0-9_.-]");
  }
  auto forward = to.kind == route_kind::payment ? owner_elsewhere(ctx, pay_id) : std::nullopt;
  if (forward && !forward->second)
    return owner_unavailable(slot, forward->first);
  auto reply = slot.start();
  auto merchant_id = merchant->id;
  nonce_accepted nonce{merchant->id, request.nonce, now_ms};
  auto on_found = [=](payment_lookup& found) {
    if (!found.found || found.record.order.merchant_id != merchant_id) {
      reply(404, error_json("not_found", "no such payment"));
      return;
    }
    self->send(self->state.context->store, std::vector<nonce_accepted>{nonce});
    reply(200, render_payment(found.record));
  };
  auto on_error = [=](caf::error& error) { answer_store_error(reply, error); };
  if (auto owner = forward) {
    auto instance = owner->first;
    self->request(owner->second, ctx.forward_timeout, get_atom::value, pay_id)
      .then(on_found, [=](caf::error& error) {
        if (error == errc::store_unavailable || error == errc::overloaded)
          answer_store_error(reply, error);
        else
          answer_owner_unavailable(reply, instance);
      });
    return;
  }
  if (to.kind == route_kind::payment) {
    self->request(reader_for(ctx, pay_id), answer_timeout(ctx), get_atom::value, pay_id)
      .then(on_found, on_error);
    return;
  }
  // By order number: this store first (orders taken before the cluster had
  // slots stay where they were made), then the owner of the key's slot.
  int32_t owner = 0;
  if (ctx.cluster != nullptr) {
    if (ctx.slots->version() != st.slots_version) {
      st.slots_version = ctx.slots->version();
      st.slots = ctx.slots->get();
    }
    if (st.slots.known())
      owner = st.slots.owner(slot_of(merchant_id, *order_no));
  }
  if (owner == 0 || ctx.cluster->serves(owner)) {
    auto cluster = ctx.cluster;
    auto order = *order_no;
    self->request(ctx.reader, answer_timeout(ctx), find_atom::value, merchant_id, *order_no)
      .then(
        [=](payment_lookup& here) {
          // A slot adopted with its store: the order may be in that store.
          if (!here.found && cluster != nullptr) {
            bool failed = false;
            if (auto found = cluster->find_adopted(merchant_id, order, failed))
              here = payment_lookup{true, std::move(*found)};
            else if (failed)
              return answer_store_error(reply, caf::make_error(errc::store_unavailable));
          }
          on_found(here);
        },
        on_error);
    return;
  }
  auto forward_timeout = ctx.forward_timeout;
  auto find_there = [=](payment_lookup& here) {
    if (here.found)
      return on_found(here);
    auto handle = self->state.context->cluster->owner(owner);
    if (!handle)
      return answer_owner_unavailable(reply, owner);
    self->request(handle, forward_timeout, find_atom::value, merchant_id, *order_no)
      .then(on_found, [=](caf::error& error) {
        if (error == errc::store_unavailable || error == errc::overloaded)
          answer_store_error(reply, error);
        else
          answer_owner_unavailable(reply, owner);
      });
  };
  self->request(ctx.reader, answer_timeout(ctx), find_atom::value, merchant_id, *order_no)
    .then(find_there, on_error);
}

/// Routes one complete request; its response takes slot `sequence`.
void dispatch(ingress_broker* self, caf::io::connection_handle hdl, connection& conn,
              http_request& request) {
  auto& st = self->state;
  uint64_t sequence = conn.first_sequence + conn.responses.size();
  conn.responses.emplace_back();
  conn.responses.back().started_us = now_us();
  bool keep_alive = request.keep_alive && !st.draining;
  if (!keep_alive)
    conn.closing = true;
  request_slot slot{self, hdl, conn, sequence, keep_alive};
  if (conn.responses.size() > st.context->max_pipeline)
    return slot.overloaded("too many pipelined requests");
  auto to = route_request(request.method, request.target);
  if (to.kind == route_kind::not_found)
    return slot.error(404, "not_found", "no such resource");
  if (!to.method_allowed)
    return slot.error(405, "method_not_allowed",
                      to.kind == route_kind::payments ? "use POST or GET"
                      : to.kind == route_kind::channel_notify || to.kind == route_kind::reconcile
                        ? "use POST"
                        : "use GET",
                      std::string{"Allow: "} + to.allow + "\r\n");
  switch (to.kind) {
    case route_kind::healthz:
    case route_kind::readyz:
    case route_kind::metrics:
      return serve_operations(slot, to.kind);
    case route_kind::channel_notify:
      return serve_notification(slot, request, std::string{to.channel_id});
    case route_kind::reconcile:
      return serve_reconcile(slot, request);
    default:
      return serve_payments(slot, request, to);
  }
}

void on_data(ingress_broker* self, caf::io::new_data_msg& msg) {
  auto& st = self->state;
  auto found = st.connections.find(msg.handle);
  if (found == st.connections.end())
    return;
  auto& conn = *found->second;
  if (conn.closing)
    return;
  auto now = monotonic_now_ms();
  conn.last_activity_ms = now;
  std::vector<http_request> requests;
  int error_status = conn.parser.feed(msg.buf.data(), msg.buf.size(), requests);
  for (auto& request : requests) {
    dispatch(self, msg.handle, conn, request);
    if (conn.closing)
      break;
  }
  if (error_status != 0 && !conn.closing) {
    conn.closing = true;
    pending_response response;
    response.ready = true;
    response.close_after = true;
    response.status = error_status;
    response.started_us = now_us();
    const char* code = error_status == 413   ? "body_too_large"
                       : error_status == 431 ? "headers_too_large"
                       : error_status == 411 ? "length_required"
                                             : "bad_request";
    const char* message = error_status == 413   ? "the body is over the limit"
                          : error_status == 431 ? "the request line and headers are over the limit"
                          : error_status == 411 ? "a POST needs Content-Length or chunked encoding"
                                                : "malformed HTTP request";
    response.bytes = error_response(error_status, code, message, false);
    conn.responses.push_back(std::move(response));
  }
  if (conn.parser.mid_request()) {
    if (conn.partial_since_ms == 0)
      conn.partial_since_ms = now;
  } else {
    conn.partial_since_ms = 0;
  }
  flush_ready(self, msg.handle);
}

void on_tick(ingress_broker* self) {
  auto& st = self->state;
  const auto& ctx = *st.context;
  auto now = monotonic_now_ms();
  st.nonces->expire(unix_now_ms());
  expire_calls(self);
  std::vector<caf::io::connection_handle> to_close;
  std::vector<caf::io::connection_handle> timed_out;
  for (auto& [hdl, conn] : st.connections) {
    if (conn->closing)
      continue;
    if (conn->partial_since_ms != 0) {
      int64_t limit = conn->parser.in_body() ? ctx.body_timeout_ms : ctx.header_timeout_ms;
      if (now - conn->partial_since_ms > limit)
        timed_out.push_back(hdl);
    } else if (conn->responses.empty()
               && (now - conn->last_activity_ms > ctx.idle_timeout_ms || st.draining)) {
      to_close.push_back(hdl);
    }
  }
  for (auto hdl : to_close) {
    self->close(hdl);
    st.connections.erase(hdl);
  }
  for (auto hdl : timed_out) {
    auto& conn = *st.connections[hdl];
    conn.closing = true;
    pending_response response;
    response.ready = true;
    response.close_after = true;
    response.status = 408;
    response.started_us = now_us();
    response.bytes = error_response(408, "request_timeout", "the request did not arrive in time",
                                    false);
    conn.responses.push_back(std::move(response));
    flush_ready(self, hdl);
  }
  ctx.figures->http_connections = static_cast<int64_t>(st.connections.size());
  self->delayed_send(self, std::chrono::milliseconds{tick_interval_ms}, tick_atom::value);
}

caf::behavior ingress_behavior(ingress_broker* self, caf::intrusive_ptr<caf::io::doorman> listener,
                               std::shared_ptr<const ingress_context> context) {
  // A broker runs on the middleman's multiplexer thread, and only there.
  name_this_thread("pb-ingress");
  auto& st = self->state;
  st.context = std::move(context);
  st.nonces = std::make_unique<nonce_cache>(st.context->recent_nonce_ms);
  for (const auto& settings : st.context->shards)
    st.shards.emplace_back(settings);
  st.listener = listener->hdl();
  self->add_doorman(std::move(listener));
  self->delayed_send(self, std::chrono::milliseconds{tick_interval_ms}, tick_atom::value);
  return {
    [=](caf::io::new_connection_msg& msg) {
      auto& st = self->state;
      if (st.draining || st.connections.size() >= st.context->max_connections) {
        self->close(msg.handle);
        return;
      }
      auto conn = std::make_unique<connection>(st.context->http);
      conn->last_activity_ms = monotonic_now_ms();
      conn->first_sequence = st.next_sequence_base;
      st.next_sequence_base += uint64_t{1} << 32;
      if (!st.handles_checked) {
        if (auto verdict = handle_is_socket(self, msg.handle)) {
          st.handles_checked = true;
          st.handles_are_sockets = *verdict;
          if (!*verdict)
            spdlog::warn("ingress: CAF's connection handles are not their sockets' numbers; "
                         "answers go through CAF's write path");
        }
      }
      conn->caf_writes = !st.handles_are_sockets;
      st.connections.emplace(msg.handle, std::move(conn));
      st.context->figures->http_connections = static_cast<int64_t>(st.connections.size());
      self->configure_read(msg.handle, caf::io::receive_policy::at_most(8 * 1024));
    },
    [=](caf::io::new_data_msg& msg) { on_data(self, msg); },
    [=](caf::io::data_transferred_msg& msg) { on_written(self, msg); },
    [=](caf::io::connection_closed_msg& msg) {
      auto& st = self->state;
      st.connections.erase(msg.handle);
      st.context->figures->http_connections = static_cast<int64_t>(st.connections.size());
    },
    [=](caf::io::acceptor_closed_msg&) {},
    [=](tick_atom) { on_tick(self); },
    [=](flush_atom) { flush_creates(self); },
    [=](drain_atom) {
      auto& st = self->state;
      if (st.draining)
        return;
      st.draining = true;
      self->close(st.listener);
      spdlog::info("ingress draining: {} requests in flight, {} connections", st.calls.size(),
                   st.connections.size());
    },
  };
}

}  // namespace

caf::actor spawn_ingress(caf::actor_system& system, caf::intrusive_ptr<caf::io::doorman> listener,
                         std::shared_ptr<const ingress_context> context) {
  return system.middleman().spawn_broker(ingress_behavior, std::move(listener), std::move(context));
}

}  // namespace paybus
