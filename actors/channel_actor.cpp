// A payment channel: a front actor holding the circuit breaker and the queue
// limit, and a pool of detached workers, each with its own keep-alive libcurl
// handle, doing the blocking HTTP exchange (sign, send, verify).

#include <strings.h>

#include <algorithm>
#include <cstdlib>

#include <caf/actor_system.hpp>
#include <caf/response_promise.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <curl/curl.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/payment_rules.hpp"
#include "actors/spawn.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/metrics.hpp"
#include "common/signing.hpp"
#include "common/thread_name.hpp"

namespace paybus {

namespace {

struct http_exchange {
  long status = 0;
  std::string body;
  std::string timestamp;
  std::string nonce;
  std::string signature;
  std::string channel;
  bool transport_ok = false;
  bool never_sent = false;  // the connection was refused: nothing left the bus
  std::string error;
};

size_t collect_body(char* data, size_t size, size_t count, void* out) {
  auto* exchange = static_cast<http_exchange*>(out);
  if (exchange->body.size() < (1u << 20))
    exchange->body.append(data, size * count);
  return size * count;
}

size_t collect_header(char* data, size_t size, size_t count, void* out) {
  auto* exchange = static_cast<http_exchange*>(out);
  std::string_view line{data, size * count};
  auto colon = line.find(':');
  if (colon == std::string_view::npos)
    return size * count;
  auto name = line.substr(0, colon);
  auto value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
    value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  auto is = [&](const char* header) {
    return name.size() == std::strlen(header) && strncasecmp(name.data(), header, name.size()) == 0;
  };
  if (is("X-Paybus-Timestamp"))
    exchange->timestamp = value;
  else if (is("X-Paybus-Nonce"))
    exchange->nonce = value;
  else if (is("X-Paybus-Signature"))
    exchange->signature = value;
  else if (is("X-Paybus-Channel"))
    exchange->channel = value;
  return size * count;
}

/// The path part of a base URL ("" for "http://host:port").
std::string url_path(const std::string& url) {
  auto scheme = url.find("://");
  auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (slash == std::string::npos)
    return {};
  auto path = url.substr(slash);
  while (!path.empty() && path.back() == '/')
    path.pop_back();
  return path;
}

struct worker_state {
  channel_settings_runtime settings;
  CURL* curl = nullptr;
  ~worker_state() {
    if (curl != nullptr)
      curl_easy_cleanup(curl);
  }
};

using worker_actor = channel_actor;
using worker_pointer = worker_actor::stateful_pointer<worker_state>;

/// Whether the environment names a proxy, which libcurl then uses.
bool proxy_in_environment() {
  for (const char* name : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                           "ALL_PROXY"})
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0')
      return true;
  return false;
}

/// What every request of a worker shares, set once on its handle: with
/// curl_easy_reset and a dozen options per request libcurl spent about as
/// much on its own bookkeeping as on the exchange. With no proxy in the
/// environment, "no proxy" spares libcurl reading those variables again on
/// every request; one set there is used as before.
void configure(worker_state& st) {
  curl_easy_setopt(st.curl, CURLOPT_TIMEOUT_MS, static_cast<long>(st.settings.timeout_ms));
  curl_easy_setopt(st.curl, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::min<int64_t>(st.settings.timeout_ms, 2000)));
  curl_easy_setopt(st.curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(st.curl, CURLOPT_TCP_NODELAY, 1L);
  if (!proxy_in_environment())
    curl_easy_setopt(st.curl, CURLOPT_PROXY, "");
  curl_easy_setopt(st.curl, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(st.curl, CURLOPT_WRITEFUNCTION, collect_body);
  curl_easy_setopt(st.curl, CURLOPT_HEADERFUNCTION, collect_header);
}

http_exchange perform(worker_state& st, const char* method, const std::string& target,
                      const std::string& body) {
  http_exchange exchange;
  auto signature = sign_rsa(st.settings.bus_key.get(), method, target, body, unix_now_ms());
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");
  headers = curl_slist_append(headers, ("X-Paybus-Channel: " + st.settings.id).c_str());
  headers = curl_slist_append(headers, ("X-Paybus-Timestamp: " + signature.timestamp).c_str());
  headers = curl_slist_append(headers, ("X-Paybus-Nonce: " + signature.nonce).c_str());
  headers = curl_slist_append(headers, ("X-Paybus-Signature: " + signature.signature).c_str());
  auto url = st.settings.url;
  while (!url.empty() && url.back() == '/')
    url.pop_back();
  url += target.substr(url_path(st.settings.url).size());
  curl_easy_setopt(st.curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(st.curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(st.curl, CURLOPT_WRITEDATA, &exchange);
  curl_easy_setopt(st.curl, CURLOPT_HEADERDATA, &exchange);
  if (std::string_view{method} == "POST") {
    curl_easy_setopt(st.curl, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(st.curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  } else {
    curl_easy_setopt(st.curl, CURLOPT_HTTPGET, 1L);
  }
  auto code = curl_easy_perform(st.curl);
  curl_easy_setopt(st.curl, CURLOPT_HTTPHEADER, nullptr);  // the list goes now
  curl_slist_free_all(headers);
  if (code != CURLE_OK) {
    exchange.error = curl_easy_strerror(code);
    exchange.never_sent = code == CURLE_COULDNT_CONNECT || code == CURLE_COULDNT_RESOLVE_HOST;
    return exchange;
  }
  curl_easy_getinfo(st.curl, CURLINFO_RESPONSE_CODE, &exchange.status);
  exchange.transport_ok = true;
  return exchange;
}

/// Turns an exchange into an outcome: only a signed, well-formed answer
/// counts; anything else leaves the outcome UNKNOWN.
channel_outcome interpret(const worker_state& st, const http_exchange& exchange,
                          const char* method, const std::string& target,
                          const std::string& pay_id) {
  channel_outcome outcome;
  outcome.pay_id = pay_id;
  outcome.channel_id = st.settings.id;
  outcome.status = "UNKNOWN";
  if (!exchange.transport_ok) {
    outcome.reason = exchange.error;
    if (exchange.never_sent)
      outcome.status = "UNAVAILABLE";
    return outcome;
  }
  if (exchange.status >= 500) {
    outcome.reason = "HTTP " + std::to_string(exchange.status);
    return outcome;
  }
  if (exchange.channel != st.settings.id
      || !verify_rsa_message(st.settings.channel_key.get(), method, target, exchange.timestamp,
                             exchange.nonce, exchange.signature, exchange.body, unix_now_ms(),
                             st.settings.window_seconds)) {
    outcome.reason = "bad or missing signature on the channel's answer";
    return outcome;
  }
  if (exchange.status >= 400) {
    outcome.status = "REFUSED";
    outcome.reason = "HTTP " + std::to_string(exchange.status);
    return outcome;
  }
  auto body = nlohmann::json::parse(exchange.body, nullptr, false);
  if (body.is_discarded() || !body.is_object() || body.value("pay_id", "") != pay_id
      || !body.contains("status") || !body["status"].is_string()) {
    outcome.reason = "malformed answer";
    return outcome;
  }
  auto status = body["status"].get<std::string>();
  if (status != "SUCCEEDED" && status != "FAILED" && status != "ACCEPTED" && status != "NOT_FOUND") {
    outcome.reason = "unknown status " + status.substr(0, 32);
    return outcome;
  }
  outcome.status = status;
  if (body.contains("channel_txn_id") && body["channel_txn_id"].is_string())
    outcome.channel_txn_id = body["channel_txn_id"].get<std::string>().substr(0, 128);
  if (body.contains("message") && body["message"].is_string())
    outcome.reason = body["message"].get<std::string>().substr(0, 200);
  return outcome;
}

worker_actor::behavior_type worker_behavior(worker_pointer self,
                                            channel_settings_runtime settings) {
  name_this_thread("pb-ch-" + settings.id);
  self->state.settings = std::move(settings);
  self->state.settings.bus_key = crypto::copy_for_thread(self->state.settings.bus_key);
  self->state.curl = curl_easy_init();
  configure(self->state);
  return {
    [=](pay_atom, const payment_record& record) {
      auto& st = self->state;
      nlohmann::json body{{"pay_id", record.pay_id},
                          {"amount", record.order.amount_minor},
                          {"currency", record.order.currency},
                          {"subject", record.order.subject},
                          {"notify_url", st.settings.notify_url}};
      auto target = url_path(st.settings.url) + "/v1/pay";
      auto exchange = perform(st, "POST", target, body.dump());
      return interpret(st, exchange, "POST", target, record.pay_id);
    },
    [=](query_atom, const std::string& pay_id) {
      auto& st = self->state;
      auto target = url_path(st.settings.url) + "/v1/pay/" + pay_id;
      auto exchange = perform(st, "GET", target, "");
      return interpret(st, exchange, "GET", target, pay_id);
    },
  };
}

struct front_state {
  channel_settings_runtime settings;
  metrics* figures = nullptr;
  std::vector<worker_actor> workers;
  size_t next_worker = 0;
  size_t in_flight = 0;
  std::unique_ptr<circuit_breaker> breaker;
};

using front_pointer = channel_actor::stateful_pointer<front_state>;

/// Whether a request may go out now (a half-open breaker lets one probe).
bool admit(front_pointer self) {
  auto& st = self->state;
  if (st.in_flight >= st.settings.max_queue)
    return false;
  auto now = monotonic_now_ms();
  bool allowed = st.breaker->allow(now);
  st.figures->set_breaker_state(st.settings.id, static_cast<int>(st.breaker->current(now)));
  return allowed;
}

void observe(front_pointer self, const channel_outcome& outcome) {
  auto& st = self->state;
  --st.in_flight;
  st.figures->count_channel_request(st.settings.id, outcome.status);
  auto now = monotonic_now_ms();
  auto before = st.breaker->current(now);
  bool failed = outcome.status == "UNKNOWN" || outcome.status == "UNAVAILABLE";
  st.breaker->record(!failed, now);
  auto after = st.breaker->current(now);
  if (after == circuit_breaker::state::open && before != circuit_breaker::state::open)
    spdlog::warn("channel {}: circuit open after {} failures ({})", st.settings.id,
                 st.breaker->consecutive_failures(), outcome.reason);
  else if (after == circuit_breaker::state::closed && before != circuit_breaker::state::closed)
    spdlog::info("channel {}: circuit closed", st.settings.id);
  st.figures->set_breaker_state(st.settings.id, static_cast<int>(after));
}

channel_actor::behavior_type front_behavior(front_pointer self,
                                            channel_settings_runtime settings,
                                            metrics* figures) {
  auto& st = self->state;
  st.settings = settings;
  st.figures = figures;
  st.breaker = std::make_unique<circuit_breaker>(settings.breaker_failures, settings.breaker_open_ms);
  figures->set_breaker_state(settings.id, 0);
  for (size_t i = 0; i < std::max<size_t>(1, settings.concurrency); ++i)
    st.workers.push_back(self->system().spawn<caf::detached>(worker_behavior, settings));
  for (auto& worker : st.workers)
    self->link_to(worker);
  auto forward = [=](auto... request) -> caf::result<channel_outcome> {
    auto& st = self->state;
    auto promise = self->make_response_promise<channel_outcome>();
    auto& worker = st.workers[st.next_worker++ % st.workers.size()];
    ++st.in_flight;
    self->request(worker, caf::infinite, request...)
      .then(
        [=](channel_outcome& outcome) mutable {
          observe(self, outcome);
          promise.deliver(std::move(outcome));
        },
        [=](caf::error& error) mutable {
          channel_outcome outcome;
          outcome.channel_id = self->state.settings.id;
          outcome.status = "UNKNOWN";
          outcome.reason = self->system().render(error);
          observe(self, outcome);
          promise.deliver(std::move(outcome));
        });
    return promise;
  };
  return {
    [=](pay_atom, payment_record& record) -> caf::result<channel_outcome> {
      if (!admit(self)) {
        channel_outcome outcome{record.pay_id, self->state.settings.id, "UNAVAILABLE", "",
                                "circuit open or queue full: not sent"};
        self->state.figures->count_channel_request(self->state.settings.id, outcome.status);
        return outcome;
      }
      return forward(pay_atom::value, std::move(record));
    },
    [=](query_atom, std::string& pay_id) -> caf::result<channel_outcome> {
      if (!admit(self)) {
        channel_outcome outcome{pay_id, self->state.settings.id, "UNKNOWN", "",
                                "circuit open or queue full: not asked"};
        return outcome;
      }
      return forward(query_atom::value, std::move(pay_id));
    },
  };
}

} // namespace

channel_actor spawn_channel(caf::actor_system& system, channel_settings_runtime settings,
                            metrics& figures) {
  return system.spawn(front_behavior, std::move(settings), &figures);
}

} // namespace paybus
