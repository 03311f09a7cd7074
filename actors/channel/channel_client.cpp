#include "actors/channel/channel_client.hpp"

#include <strings.h>

#include <algorithm>
#include <charconv>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/common/transfer_loop.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/nonce_cache.hpp"
#include "common/signing.hpp"
#include "common/text.hpp"
#include "common/thread_name.hpp"

namespace paybus {

namespace {

struct http_exchange {
  long status = 0;
  std::string body;
  received_signature signed_by;
  bool transport_ok = false;
  bool request_started = false;  // libcurl was about to send the request, once or more
  bool never_sent = false;       // provably nothing of the request reached a socket
  std::string error;
};

size_t collect_body(char* data, size_t size, size_t count, void* out) {
  auto* exchange = static_cast<http_exchange*>(out);
  if (exchange->body.size() < (1u << 20))
    exchange->body.append(data, size * count);
  return size * count;
}

size_t collect_header(char* data, size_t size, size_t count, void* out) {
  take_signature_header({data, size * count}, static_cast<http_exchange*>(out)->signed_by);
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

/// libcurl calls this once a connection is made or reused (TLS included),
/// right before it writes the request on it: from then on, any byte of the
/// request may have reached the channel. It calls it again for each attempt
/// (a request on a reused connection that died unanswered is sent again on
/// a new one), so one call is enough to know the request may have left.
int request_starting(void* data, char*, char*, int, int) {
  static_cast<http_exchange*>(data)->request_started = true;
  return CURL_PREREQFUNC_OK;
}

/// Whether the environment names a proxy, which libcurl then uses.
bool proxy_in_environment() {
  for (const char* name :
       {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
    if (const char* value = std::getenv(name); value != nullptr && *value != '\0')
      return true;
  return false;
}

/// One request on its way: made on a CAF thread, signed on a signer thread,
/// exchanged and verified on the channel's thread.
struct exchange_job {
  uint64_t id = 0;
  const char* method = "POST";
  std::string target;  // what is signed: the URL's path
  std::string url;
  std::string body;
  std::string pay_id;
  payment_record record;  // a payment to send: its body is made when signed
  bool pay = false;
  curl_slist* headers = nullptr;
  http_exchange exchange;

  exchange_job() = default;
  exchange_job(const exchange_job&) = delete;
  exchange_job& operator=(const exchange_job&) = delete;
  ~exchange_job() {
    curl_slist_free_all(headers);
  }
};

/// The channel's signed answers this bus has believed, so that none is
/// believed twice (a replayed NOT_FOUND, say): every nonce for the whole
/// timestamp window, and nothing signed before the bus started (its
/// answers to requests of an earlier run, whose nonces this run never saw).
/// One per channel, on the channel's thread.
class answer_memory {
public:
  answer_memory(int64_t window_seconds, int64_t started_ms)
    : nonces_(window_seconds * 1000), started_s_(started_ms / 1000) {
  }

  /// Whether an answer signed at `timestamp` (unix seconds, checked to be
  /// within the window already) with `nonce` is new; remembers it.
  bool fresh(std::string_view timestamp, std::string_view nonce, int64_t now_ms) {
    int64_t signed_s = 0;
    auto [end, error] = std::from_chars(timestamp.data(), timestamp.data() + timestamp.size(),
                                        signed_s);
    if (error != std::errc{} || end != timestamp.data() + timestamp.size() || signed_s < started_s_)
      return false;
    nonces_.expire(now_ms);
    if (nonces_.seen({}, nonce))
      return false;
    nonces_.remember({}, nonce, now_ms);
    return true;
  }

private:
  nonce_cache nonces_;
  int64_t started_s_;
};

/// Turns an exchange into an outcome: only a signed, well-formed answer
/// never seen before counts; anything else leaves the outcome UNKNOWN.
channel_outcome interpret(const channel_settings_runtime& settings, const exchange_job& job,
                          answer_memory& answers) {
  const auto& exchange = job.exchange;
  channel_outcome outcome;
  outcome.pay_id = job.pay_id;
  outcome.channel_id = settings.id;
  outcome.status = channel_status::unknown;
  if (!exchange.transport_ok) {
    outcome.reason = exchange.error;
    if (exchange.never_sent)
      outcome.status = channel_status::unavailable;
    return outcome;
  }
  if (exchange.status >= 500) {
    outcome.reason = "HTTP " + std::to_string(exchange.status);
    return outcome;
  }
  const auto& signed_by = exchange.signed_by;
  if (signed_by.channel != settings.id
      || !verify_rsa_message(settings.channel_key.get(), job.method, job.target,
                             signed_by.timestamp, signed_by.nonce, signed_by.signature,
                             exchange.body, unix_now_ms(), settings.window_seconds)) {
    outcome.reason = "bad or missing signature on the channel's answer";
    return outcome;
  }
  if (!answers.fresh(signed_by.timestamp, signed_by.nonce, unix_now_ms())) {
    outcome.reason = "a replayed answer: its nonce was seen already, or it was signed before "
                     "the bus started";
    spdlog::warn("channel {}: {} for payment {}; not believed, the payment is asked again",
                 settings.id, outcome.reason, job.pay_id);
    return outcome;
  }
  if (exchange.status == 409) {
    // Conflict: the channel may already hold this pay_id (a request it took
    // late, then this one again). Not a refusal: ask, never go elsewhere.
    outcome.reason = "HTTP 409 (the channel may hold it already)";
    return outcome;
  }
  if (exchange.status >= 400) {
    outcome.status = channel_status::refused;
    outcome.reason = "HTTP " + std::to_string(exchange.status);
    return outcome;
  }
  // Whatever the channel signed is still input: every field's type is checked
  // before it is read (nlohmann's readers throw on the wrong type).
  auto body = nlohmann::json::parse(exchange.body, nullptr, false);
  auto is_string = [&](const char* key) { return body.contains(key) && body[key].is_string(); };
  if (body.is_discarded() || !body.is_object() || !is_string("pay_id")
      || body["pay_id"].get<std::string>() != job.pay_id || !is_string("status")) {
    outcome.reason = "malformed answer";
    return outcome;
  }
  auto status = body["status"].get<std::string>();
  if (status != "SUCCEEDED" && status != "FAILED" && status != "ACCEPTED"
      && status != "NOT_FOUND") {
    outcome.reason = "unknown status " + status.substr(0, 32);
    return outcome;
  }
  if (is_string("channel_txn_id")) {
    auto txn = body["channel_txn_id"].get<std::string>();
    if (!valid_channel_txn_id(txn)) {
      outcome.reason = "malformed answer: channel_txn_id not at most 128 bytes of printable text";
      return outcome;
    }
    outcome.channel_txn_id = std::move(txn);
  }
  // One of the four, checked above.
  outcome.status = parse_channel_status(status).value_or(channel_status::unknown);
  if (is_string("message"))
    outcome.reason = body["message"].get<std::string>().substr(0, 200);
  return outcome;
}

class signer_pool;

}  // namespace

struct channel_client::core {
  channel_settings_runtime settings;
  deliver_function deliver;
  std::string base_url;  // without trailing slashes
  std::string base_path;
  bool no_proxy = true;
  std::shared_ptr<signer_pool> signers;
  // Signed jobs wait here for a slot (channels.concurrency).
  std::unique_ptr<transfer_loop<exchange_job>> loop;
  std::unique_ptr<answer_memory> answers;  // used on the channel's thread only

  /// On a signer thread: the body (a payment), the signature, the headers.
  void sign(std::unique_ptr<exchange_job> job) {
    if (job->pay) {
      nlohmann::json body{{"pay_id", job->record.pay_id},
                          {"amount", job->record.order.amount_minor},
                          {"currency", job->record.order.currency},
                          {"subject", job->record.order.subject},
                          {"notify_url", settings.notify_url}};
      // Subjects are valid UTF-8 once accepted; should one not be, it is
      // replaced, not thrown on a thread with no one to catch it.
      job->body = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    }
    auto signature = sign_rsa(settings.bus_key.get(), job->method, job->target, job->body,
                              unix_now_ms());
    auto add = [&](const std::string& line) {
      job->headers = curl_slist_append(job->headers, line.c_str());
    };
    add("Content-Type: application/json");
    add("Expect:");
    add("X-Paybus-Channel: " + settings.id);
    add("X-Paybus-Timestamp: " + signature.timestamp);
    add("X-Paybus-Nonce: " + signature.nonce);
    add("X-Paybus-Signature: " + signature.signature);
    loop->submit(std::move(job));  // dropped if the channel is stopping
  }

  /// A handle with what every exchange of this channel shares. With no
  /// proxy in the environment, "no proxy" spares libcurl reading those
  /// variables on every request; one set there is used as before.
  CURL* make_handle() const {
    CURL* easy = curl_easy_init();
    if (easy == nullptr)
      return nullptr;
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(settings.timeout_ms));
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(std::min<int64_t>(settings.timeout_ms, 2000)));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    if (no_proxy)
      curl_easy_setopt(easy, CURLOPT_PROXY, "");
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_1_1);
    if (!settings.ca_file.empty())
      curl_easy_setopt(easy, CURLOPT_CAINFO, settings.ca_file.c_str());
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect_body);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, collect_header);
    curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, request_starting);
    return easy;
  }

  /// Sets a signed job's own options on `easy`.
  static bool prepare(CURL* easy, exchange_job& job) {
    curl_easy_setopt(easy, CURLOPT_URL, job.url.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, job.headers);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, &job.exchange);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, &job.exchange);
    curl_easy_setopt(easy, CURLOPT_PREREQDATA, &job.exchange);
    if (job.pay) {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, job.body.c_str());
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(job.body.size()));
    } else {
      curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
    }
    return true;
  }

  /// On the channel's thread: verifies what came back and delivers the outcome.
  void finished(std::unique_ptr<exchange_job> job, CURL* easy, CURLcode code) {
    auto& exchange = job->exchange;
    if (easy == nullptr) {
      exchange.error = "cannot make a libcurl handle";
      exchange.never_sent = true;
    } else if (code == CURLE_OK) {
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &exchange.status);
      exchange.transport_ok = true;
    } else {
      exchange.error = curl_easy_strerror(code);
      // Whatever the code says (a refused connection is the last word of a
      // request first written on a reused connection that died): only a
      // request libcurl never began to write was never sent.
      exchange.never_sent = !exchange.request_started;
    }
    deliver(job->id, interpret(settings, *job, *answers));
  }
};

namespace {

/// The signer threads, one per core, shared by every channel of the process
/// while any channel lives.
class signer_pool {
public:
  static std::shared_ptr<signer_pool> shared() {
    static std::mutex mutex;
    static std::weak_ptr<signer_pool> current;
    std::lock_guard<std::mutex> guard{mutex};
    auto pool = current.lock();
    if (!pool) {
      pool.reset(new signer_pool(std::max(1u, std::thread::hardware_concurrency())));
      current = pool;
    }
    return pool;
  }

  ~signer_pool() {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      stopping_ = true;
    }
    wake_.notify_all();
    for (auto& thread : threads_)
      thread.join();
  }

  void post(std::shared_ptr<channel_client::core> channel, std::unique_ptr<exchange_job> job) {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      jobs_.emplace_back(std::move(channel), std::move(job));
    }
    wake_.notify_one();
  }

private:
  explicit signer_pool(size_t threads) {
    for (size_t i = 0; i < threads; ++i)
      threads_.emplace_back([this] { run(); });
  }

  void run() {
    name_this_thread("pb-sign");
    std::unique_lock<std::mutex> lock{mutex_};
    while (true) {
      wake_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_)
        return;
      auto [channel, job] = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      channel->sign(std::move(job));
      channel.reset();  // the last reference may go here: not under the lock
      lock.lock();
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::pair<std::shared_ptr<channel_client::core>, std::unique_ptr<exchange_job>>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace

channel_client::channel_client(channel_settings_runtime settings, deliver_function deliver)
  : core_(std::make_shared<core>()) {
  auto& c = *core_;
  c.settings = std::move(settings);
  c.deliver = std::move(deliver);
  c.base_url = c.settings.url;
  while (!c.base_url.empty() && c.base_url.back() == '/')
    c.base_url.pop_back();
  c.base_path = url_path(c.settings.url);
  c.no_proxy = !proxy_in_environment();
  c.signers = signer_pool::shared();
  c.answers = std::make_unique<answer_memory>(c.settings.window_seconds, unix_now_ms());
  c.loop = std::make_unique<transfer_loop<exchange_job>>(
    "pb-ch-" + c.settings.id, c.settings.concurrency,
    transfer_loop<exchange_job>::hooks{[&c] { return c.make_handle(); }, &core::prepare,
                                       [&c](std::unique_ptr<exchange_job> job, CURL* easy,
                                            CURLcode code) {
                                         c.finished(std::move(job), easy, code);
                                       }});
  auto connections = static_cast<long>(std::max<size_t>(1, c.settings.concurrency));
  curl_multi_setopt(c.loop->multi(), CURLMOPT_MAX_HOST_CONNECTIONS, connections);
  curl_multi_setopt(c.loop->multi(), CURLMOPT_MAXCONNECTS, connections);
  c.loop->start();
}

channel_client::~channel_client() {
  core_->loop->stop();
  // Jobs still at the signers keep the core (and its loop) alive until they
  // are done; the loop is stopping, so they are dropped.
}

void channel_client::pay(uint64_t id, payment_record record) {
  auto job = std::make_unique<exchange_job>();
  job->id = id;
  job->pay = true;
  job->method = "POST";
  job->target = core_->base_path + "/v1/pay";
  job->url = core_->base_url + "/v1/pay";
  job->pay_id = record.pay_id;
  job->record = std::move(record);
  core_->signers->post(core_, std::move(job));
}

void channel_client::query(uint64_t id, const std::string& pay_id) {
  auto job = std::make_unique<exchange_job>();
  job->id = id;
  job->method = "GET";
  job->target = core_->base_path + "/v1/pay/" + pay_id;
  job->url = core_->base_url + "/v1/pay/" + pay_id;
  job->pay_id = pay_id;
  core_->signers->post(core_, std::move(job));
}

}  // namespace paybus
