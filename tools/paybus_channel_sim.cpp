// paybus-channel-sim: a payment channel (bank / wallet) stand-in that speaks
// API.md section 4 over real HTTP with real RSA signatures both ways. Its
// behaviour is set by flags and changed at run time with POST /sim/mode.
// It remembers every payment it took, so /v1/pay/{id} and statements tell
// the truth; GET /sim/payments lists them for tests.

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <ctime>
#include <deque>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <optional>
#include <queue>
#include <random>
#include <set>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <thread>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "config/settings.hpp"
#include "gateway/auth.hpp"
#include "gateway/http.hpp"

namespace {

using nlohmann::json;
using paybus::monotonic_now_ms;
using paybus::unix_now_ms;

struct sim_mode {
  int64_t latency_min_ms = 0;
  int64_t latency_max_ms = 0;
  double failed_ratio = 0;    // answered FAILED
  double accepted_ratio = 0;  // answered ACCEPTED, then notified SUCCEEDED
  double timeout_ratio = 0;   // taken (SUCCEEDED) but never answered
  int64_t pay_delay_ms = 0;   // a pay request waits this long before it is taken (a queue behind)
  int64_t notify_delay_ms = 0;
  double notify_loss_ratio = 0;
  double notify_duplicate_ratio = 0;
  bool down = false;  // refuses connections
  // A payment answered ACCEPTED keeps being answered ACCEPTED to queries
  // after it settled (its statement line says SUCCEEDED): with its
  // notification lost, only reconciliation finishes it.
  bool query_lag = false;
  // Differences planted in statements, taken from the day's lines in
  // pay_id order: the first `statement_drop` lines left out, the next
  // `statement_change_amount` at one minor unit more, the next
  // `statement_duplicate` written twice; then `statement_foreign` lines of
  // pay_ids no bus issued and `statement_malformed` lines that do not parse.
  int64_t statement_drop = 0;
  int64_t statement_change_amount = 0;
  int64_t statement_duplicate = 0;
  int64_t statement_foreign = 0;
  int64_t statement_malformed = 0;
};

void to_json(json& j, const sim_mode& m) {
  j = json{{"latency_min_ms", m.latency_min_ms},
           {"latency_max_ms", m.latency_max_ms},
           {"failed_ratio", m.failed_ratio},
           {"accepted_ratio", m.accepted_ratio},
           {"timeout_ratio", m.timeout_ratio},
           {"pay_delay_ms", m.pay_delay_ms},
           {"notify_delay_ms", m.notify_delay_ms},
           {"notify_loss_ratio", m.notify_loss_ratio},
           {"notify_duplicate_ratio", m.notify_duplicate_ratio},
           {"down", m.down},
           {"query_lag", m.query_lag},
           {"statement_drop", m.statement_drop},
           {"statement_change_amount", m.statement_change_amount},
           {"statement_duplicate", m.statement_duplicate},
           {"statement_foreign", m.statement_foreign},
           {"statement_malformed", m.statement_malformed}};
}

/// Applies the keys present in `patch`; false with `error` on a bad one.
bool apply_mode(sim_mode& mode, const json& patch, std::string& error) {
  if (!patch.is_object()) {
    error = "mode must be a JSON object";
    return false;
  }
  sim_mode next = mode;
  for (const auto& [key, value] : patch.items()) {
    auto ratio = [&](double& slot) {
      if (!value.is_number() || value.get<double>() < 0 || value.get<double>() > 1)
        return false;
      slot = value.get<double>();
      return true;
    };
    auto count = [&](int64_t& slot) {
      if (!value.is_number_integer() || value.get<int64_t>() < 0
          || value.get<int64_t>() > 1'000'000)
        return false;
      slot = value.get<int64_t>();
      return true;
    };
    auto millis = [&](int64_t& slot) {
      if (!value.is_number_integer() || value.get<int64_t>() < 0
          || value.get<int64_t>() > 3'600'000)
        return false;
      slot = value.get<int64_t>();
      return true;
    };
    bool ok = key == "latency_min_ms"           ? millis(next.latency_min_ms)
              : key == "latency_max_ms"         ? millis(next.latency_max_ms)
              : key == "failed_ratio"           ? ratio(next.failed_ratio)
              : key == "accepted_ratio"         ? ratio(next.accepted_ratio)
              : key == "timeout_ratio"          ? ratio(next.timeout_ratio)
              : key == "pay_delay_ms"           ? millis(next.pay_delay_ms)
              : key == "notify_delay_ms"        ? millis(next.notify_delay_ms)
              : key == "notify_loss_ratio"      ? ratio(next.notify_loss_ratio)
              : key == "notify_duplicate_ratio" ? ratio(next.notify_duplicate_ratio)
              : key == "down" ? (value.is_boolean() ? (next.down = value.get<bool>(), true) : false)
              : key == "query_lag"
                ? (value.is_boolean() ? (next.query_lag = value.get<bool>(), true) : false)
              : key == "statement_drop"          ? count(next.statement_drop)
              : key == "statement_change_amount" ? count(next.statement_change_amount)
              : key == "statement_duplicate"     ? count(next.statement_duplicate)
              : key == "statement_foreign"       ? count(next.statement_foreign)
              : key == "statement_malformed"     ? count(next.statement_malformed)
                                                 : false;
    if (!ok) {
      error = "bad or unknown mode key " + key;
      return false;
    }
  }
  if (next.failed_ratio + next.accepted_ratio + next.timeout_ratio > 1.0) {
    error = "failed_ratio + accepted_ratio + timeout_ratio must be at most 1";
    return false;
  }
  if (next.latency_max_ms < next.latency_min_ms)
    next.latency_max_ms = next.latency_min_ms;
  mode = next;
  return true;
}

struct payment {
  std::string pay_id;
  std::string channel_txn_id;
  std::string status;  // ACCEPTED, SUCCEEDED, FAILED
  int64_t amount = 0;
  std::string currency;
  std::string notify_url;
  int64_t paid_at_ms = 0;
  int pay_requests = 0;
  bool lagging = false;  // settled, but queries still hear ACCEPTED (query_lag)
};

/// Sends result notifications from their own thread, signed, with libcurl.
class notifier {
public:
  notifier(std::string channel_id, paybus::crypto::pkey_ptr key)
    : channel_id_(std::move(channel_id)), key_(std::move(key)), thread_([this] { run(); }) {
  }

  ~notifier() {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }

  void post(int64_t due_ms, std::string url, std::string body) {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      queue_.push({due_ms, sequence_++, std::move(url), std::move(body)});
    }
    wake_.notify_all();
  }

private:
  struct item {
    int64_t due_ms;
    uint64_t sequence;
    std::string url;
    std::string body;
    bool operator>(const item& other) const {
      return std::tie(due_ms, sequence) > std::tie(other.due_ms, other.sequence);
    }
  };

  void run() {
    CURL* curl = curl_easy_init();
    std::unique_lock<std::mutex> lock{mutex_};
    while (!stopping_) {
      if (queue_.empty()) {
        wake_.wait(lock);
        continue;
      }
      auto wait = queue_.top().due_ms - monotonic_now_ms();
      if (wait > 0) {
        wake_.wait_for(lock, std::chrono::milliseconds{wait});
        continue;
      }
      item next = queue_.top();
      queue_.pop();
      lock.unlock();
      send(curl, next);
      lock.lock();
    }
    curl_easy_cleanup(curl);
  }

  void send(CURL* curl, const item& next) {
    // The target signed is the notify URL's path (and query).
    auto scheme = next.url.find("://");
    auto slash = next.url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
    std::string target = slash == std::string::npos ? "/" : next.url.substr(slash);
    auto signed_headers = paybus::sign_rsa(key_.get(), "POST", target, next.body, unix_now_ms());
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, ("X-Paybus-Channel: " + channel_id_).c_str());
    headers = curl_slist_append(headers,
                                ("X-Paybus-Timestamp: " + signed_headers.timestamp).c_str());
    headers = curl_slist_append(headers, ("X-Paybus-Nonce: " + signed_headers.nonce).c_str());
    headers = curl_slist_append(headers,
                                ("X-Paybus-Signature: " + signed_headers.signature).c_str());
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, next.url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, next.body.c_str());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(next.body.size()));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char*, size_t size, size_t count, void*) { return size * count; });
    curl_easy_perform(curl);  // lost if it fails: the bus must query
    curl_slist_free_all(headers);
  }

  std::string channel_id_;
  paybus::crypto::pkey_ptr key_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::priority_queue<item, std::vector<item>, std::greater<item>> queue_;
  uint64_t sequence_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

struct connection {
  connection(int fd, bool admin) : fd(fd), admin(admin), parser(paybus::http_limits{}) {
  }
  int fd;
  bool admin;
  paybus::http_request_parser parser;
  std::string out;
};

/// Something due on a connection at a time: a response held back by the
/// latency mode, or a pay request not taken yet (`pay_delay_ms`: it waits in
/// the channel's queue, unknown to queries, and is taken when due whether or
/// not its sender still waits).
template <typename Payload>
struct due_on_connection {
  int64_t due_ms;
  uint64_t sequence;
  int fd;
  uint64_t connection_id;
  Payload payload;
  bool operator>(const due_on_connection& other) const {
    return std::tie(due_ms, sequence) > std::tie(other.due_ms, other.sequence);
  }
};
using delayed_response = due_on_connection<std::string>;
using held_request = due_on_connection<paybus::http_request>;

class simulator {
public:
  simulator(std::string host, uint16_t port, uint16_t admin_port, std::string channel_id,
            paybus::crypto::pkey_ptr key, paybus::crypto::pkey_ptr bus_key, sim_mode mode)
    : host_(std::move(host)),
      port_(port),
      admin_port_(admin_port),
      channel_id_(std::move(channel_id)),
      key_(key),
      bus_key_(std::move(bus_key)),
      mode_(mode),
      notifier_(channel_id_, key) {
  }

  int run() {
    epoll_ = epoll_create1(0);
    if (!mode_.down && !open_listener())
      return 1;
    if (admin_port_ != 0) {
      admin_listener_ = listen_on(admin_port_);
      if (admin_listener_ < 0)
        return 1;
    }
    std::fprintf(stderr, "paybus-channel-sim %s listening on %s:%u\n", channel_id_.c_str(),
                 host_.c_str(), port_);
    std::vector<epoll_event> events(256);
    while (!stop_requested) {
      int timeout = 100;
      if (!delayed_.empty())
        timeout = static_cast<int>(
          std::clamp<int64_t>(delayed_.top().due_ms - monotonic_now_ms(), 0, timeout));
      if (!held_.empty())
        timeout = static_cast<int>(
          std::clamp<int64_t>(held_.top().due_ms - monotonic_now_ms(), 0, timeout));
      int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), timeout);
      for (int i = 0; i < n; ++i) {
        int fd = events[i].data.fd;
        if (fd == listener_ || fd == admin_listener_)
          accept_all(fd);
        else
          serve(fd, events[i].events);
      }
      release_held();
      release_delayed();
    }
    return 0;
  }

  static volatile std::sig_atomic_t stop_requested;

private:
  int listen_on(uint16_t port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    inet_pton(AF_INET, host_ == "localhost" ? "127.0.0.1" : host_.c_str(), &address.sin_addr);
    if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0
        || listen(fd, 1024) != 0) {
      std::fprintf(stderr, "paybus-channel-sim: cannot listen on %s:%u: %s\n", host_.c_str(), port,
                   std::strerror(errno));
      ::close(fd);
      return -1;
    }
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event);
    return fd;
  }

  bool open_listener() {
    listener_ = listen_on(port_);
    return listener_ >= 0;
  }

  void close_listener() {
    if (listener_ >= 0) {
      epoll_ctl(epoll_, EPOLL_CTL_DEL, listener_, nullptr);
      ::close(listener_);
      listener_ = -1;
    }
  }

  void accept_all(int listener) {
    while (true) {
      int fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK);
      if (fd < 0)
        return;
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      connections_[fd] = std::make_unique<connection>(fd, listener == admin_listener_);
      connection_ids_[fd] = ++next_connection_id_;
      epoll_event event{};
      event.events = EPOLLIN;
      event.data.fd = fd;
      epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event);
    }
  }

  void drop(int fd) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, fd, nullptr);
    ::close(fd);
    connections_.erase(fd);
    connection_ids_.erase(fd);
  }

  void serve(int fd, uint32_t events) {
    auto found = connections_.find(fd);
    if (found == connections_.end())
      return;
    char buffer[16384];
    ssize_t n = ::recv(fd, buffer, sizeof(buffer), 0);
    if (n <= 0) {
      if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
        drop(fd);
      return;
    }
    std::vector<paybus::http_request> requests;
    int status = found->second->parser.feed(buffer, static_cast<size_t>(n), requests);
    for (auto& request : requests)
      handle(fd, request);
    if (status != 0) {
      write_now(fd, paybus::http_response(status, "application/json",
                                          paybus::error_json("bad_request", "malformed"), false));
      drop(fd);
    }
  }

  void write_now(int fd, const std::string& bytes) {
    size_t offset = 0;
    while (offset < bytes.size()) {
      ssize_t n = ::send(fd, bytes.data() + offset, bytes.size() - offset, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) {
          usleep(100);
          continue;
        }
        return;
      }
      offset += static_cast<size_t>(n);
    }
  }

  /// A response signed over the request's METHOD and TARGET.
  std::string signed_response(const paybus::http_request& request, int status,
                              const std::string& content_type, const std::string& body) {
    auto signature = paybus::sign_rsa(key_.get(), request.method, request.target, body,
                                      unix_now_ms());
    std::string headers = "X-Paybus-Channel: " + channel_id_ + "\r\nX-Paybus-Timestamp: "
                          + signature.timestamp + "\r\nX-Paybus-Nonce: " + signature.nonce
                          + "\r\nX-Paybus-Signature: " + signature.signature + "\r\n";
    return paybus::http_response(status, content_type, body, request.keep_alive, headers);
  }

  void respond(int fd, const paybus::http_request& request, std::string bytes) {
    if (fd < 0)
      return;  // its sender is gone
    int64_t latency = mode_.latency_min_ms;
    if (mode_.latency_max_ms > mode_.latency_min_ms)
      latency = std::uniform_int_distribution<int64_t>{mode_.latency_min_ms,
                                                       mode_.latency_max_ms}(rng_);
    if (latency <= 0) {
      write_now(fd, bytes);
      if (!request.keep_alive)
        drop(fd);
      return;
    }
    delayed_.push({monotonic_now_ms() + latency, delayed_sequence_++, fd, connection_ids_[fd],
                   std::move(bytes)});
  }

  /// Hands what is due in `queue` to `take`, with its connection's fd, or -1
  /// when that connection is gone.
  template <typename Queue, typename Take>
  void release_due(Queue& queue, Take take) {
    auto now = monotonic_now_ms();
    while (!queue.empty() && queue.top().due_ms <= now) {
      auto next = queue.top();
      queue.pop();
      auto id = connection_ids_.find(next.fd);
      bool still_there = id != connection_ids_.end() && id->second == next.connection_id;
      take(still_there ? next.fd : -1, next.payload);
    }
  }

  void release_held() {
    release_due(held_, [this](int fd, const paybus::http_request& request) { pay(fd, request); });
  }

  void release_delayed() {
    release_due(delayed_, [this](int fd, const std::string& bytes) {
      if (fd >= 0)
        write_now(fd, bytes);
    });
  }

  bool authenticated(const paybus::http_request& request) {
    if (request.channel != channel_id_ && !request.channel.empty() && !warned_other_id_) {
      // Once: a bus that knows this channel by another id is refused every time.
      warned_other_id_ = true;
      std::fprintf(stderr,
                   "paybus-channel-sim: refusing a request for channel '%s': this simulator is "
                   "'%s' (--channel-id, or the key file's name)\n",
                   request.channel.c_str(), channel_id_.c_str());
    }
    if (request.channel != channel_id_ || request.auth_duplicated)
      return false;
    if (!paybus::verify_rsa_message(bus_key_.get(), request.method, request.target,
                                    request.timestamp, request.nonce, request.signature,
                                    request.body, unix_now_ms(), 300))
      return false;
    return nonces_.insert(request.nonce).second;
  }

  json payment_json(const payment& p) const {
    return json{{"pay_id", p.pay_id},
                {"channel_txn_id", p.channel_txn_id},
                {"status", p.lagging ? "ACCEPTED" : p.status}};
  }

  void notify(const payment& p) {
    if (p.notify_url.empty())
      return;
    std::bernoulli_distribution lose{mode_.notify_loss_ratio};
    if (lose(rng_))
      return;
    json body{{"pay_id", p.pay_id},
              {"channel_txn_id", p.channel_txn_id},
              {"status", p.status},
              {"amount", p.amount},
              {"paid_at", paybus::format_rfc3339_ms(p.paid_at_ms)}};
    auto due = monotonic_now_ms() + mode_.notify_delay_ms;
    notifier_.post(due, p.notify_url, body.dump());
    std::bernoulli_distribution duplicate{mode_.notify_duplicate_ratio};
    if (duplicate(rng_))
      notifier_.post(due + 10, p.notify_url, body.dump());
  }

  void handle(int fd, paybus::http_request& request) {
    std::string_view target = request.target;
    if (target == "/sim/mode" && request.method == "POST") {
      auto patch = json::parse(request.body, nullptr, false);
      std::string error;
      if (patch.is_discarded() || !apply_mode(mode_, patch, error)) {
        write_now(fd, paybus::http_response(
                        400, "application/json",
                        paybus::error_json("invalid_mode", error.empty() ? "invalid JSON" : error),
                        request.keep_alive));
        return;
      }
      // Down (or up) before the answer: a caller's next request meets the new
      // state, never a listener that is still open for a moment.
      if (mode_.down) {
        close_listener();
        // Down means down: open connections break too.
        std::vector<int> open;
        for (const auto& [other, conn] : connections_)
          if (!conn->admin && other != fd)
            open.push_back(other);
        for (int other : open)
          drop(other);
      } else if (listener_ < 0)
        open_listener();
      write_now(fd, paybus::http_response(200, "application/json", json(mode_).dump(),
                                          request.keep_alive));
      return;
    }
    if (target == "/sim/mode" && request.method == "GET")
      return write_now(fd, paybus::http_response(200, "application/json", json(mode_).dump(),
                                                 request.keep_alive));
    if (target == "/sim/payments" && request.method == "GET") {
      json all = json::array();
      for (const auto& [id, p] : payments_)
        all.push_back({{"pay_id", p.pay_id},
                       {"channel_txn_id", p.channel_txn_id},
                       {"status", p.status},
                       {"amount", p.amount},
                       {"currency", p.currency},
                       {"pay_requests", p.pay_requests}});
      return write_now(fd, paybus::http_response(200, "application/json", all.dump(),
                                                 request.keep_alive));
    }
    if (target == "/sim/usage" && request.method == "GET") {
      auto usage = paybus::crypto::private_key_usage_so_far();
      json body{{"private_key_operations", usage.operations},
                {"private_key_cpu_seconds", static_cast<double>(usage.cpu_ns) / 1e9}};
      return write_now(fd, paybus::http_response(200, "application/json", body.dump(),
                                                 request.keep_alive));
    }
    if (!authenticated(request))
      return respond(fd, request,
                     signed_response(request, 401, "application/json",
                                     paybus::error_json("unauthenticated", "bad signature")));
    if (target == "/v1/pay" && request.method == "POST") {
      if (mode_.pay_delay_ms > 0)
        return held_.push({monotonic_now_ms() + mode_.pay_delay_ms, held_sequence_++, fd,
                           connection_ids_[fd], request});
      return pay(fd, request);
    }
    if (target.rfind("/v1/pay/", 0) == 0 && request.method == "GET") {
      auto found = payments_.find(std::string{target.substr(8)});
      json body = found == payments_.end() ? json{{"pay_id", std::string{target.substr(8)}},
                                                  {"channel_txn_id", ""},
                                                  {"status", "NOT_FOUND"}}
                                           : payment_json(found->second);
      return respond(fd, request, signed_response(request, 200, "application/json", body.dump()));
    }
    if (target.rfind("/v1/statements/", 0) == 0 && request.method == "GET") {
      if (auto csv = statement(std::string{target.substr(15)}))
        return respond(fd, request, signed_response(request, 200, "text/csv", *csv));
    }
    respond(fd, request,
            signed_response(request, 404, "application/json",
                            paybus::error_json("not_found", "no such resource")));
  }

  void pay(int fd, const paybus::http_request& request) {
    auto body = json::parse(request.body, nullptr, false);
    auto absent_or_string = [&](const char* key) {
      return !body.contains(key) || body[key].is_string();
    };
    if (body.is_discarded() || !body.is_object() || !body.contains("pay_id")
        || !body["pay_id"].is_string() || !body.contains("amount")
        || !body["amount"].is_number_integer() || !absent_or_string("currency")
        || !absent_or_string("notify_url"))
      return respond(
        fd, request,
        signed_response(
          request, 400, "application/json",
          paybus::error_json("invalid_request",
                             "pay_id and amount required; currency and notify_url strings")));
    auto pay_id = body["pay_id"].get<std::string>();
    auto found = payments_.find(pay_id);
    if (found != payments_.end()) {  // the same pay_id again: the channel dedupes
      ++found->second.pay_requests;
      return respond(fd, request,
                     signed_response(request, 200, "application/json",
                                     payment_json(found->second).dump()));
    }
    payment p;
    p.pay_id = pay_id;
    p.channel_txn_id = channel_id_ + "-" + std::to_string(++txn_counter_);
    p.amount = body["amount"].get<int64_t>();
    p.currency = body.value("currency", "");
    p.notify_url = body.value("notify_url", "");
    p.pay_requests = 1;
    double draw = std::uniform_real_distribution<double>{0, 1}(rng_);
    bool never_answer = false;
    if (draw < mode_.failed_ratio) {
      p.status = "FAILED";
      p.paid_at_ms = unix_now_ms();
    } else if (draw < mode_.failed_ratio + mode_.accepted_ratio) {
      p.status = "ACCEPTED";
    } else {
      p.status = "SUCCEEDED";
      p.paid_at_ms = unix_now_ms();
      never_answer = draw < mode_.failed_ratio + mode_.accepted_ratio + mode_.timeout_ratio;
    }
    auto& stored = payments_[pay_id] = p;
    if (never_answer)
      return;  // taken, but the answer is never sent
    json answer = payment_json(stored);
    answer["code"] = stored.status == "FAILED" ? "DECLINED" : "OK";
    answer["message"] = stored.status == "FAILED" ? "declined by the simulator" : "ok";
    respond(fd, request, signed_response(request, 200, "application/json", answer.dump()));
    if (stored.status == "ACCEPTED") {
      stored.status = "SUCCEEDED";  // it settles; only the notification tells
      stored.lagging = mode_.query_lag;
      stored.paid_at_ms = unix_now_ms() + mode_.notify_delay_ms;
      notify(stored);
    }
  }

  /// The day's statement, with the differences the mode plants; nullopt
  /// for a target that is not a date.
  std::optional<std::string> statement(const std::string& date) {
    int64_t day_start = 0;
    if (!paybus::parse_rfc3339_ms(date + "T00:00:00Z", day_start) || date.size() != 10)
      return std::nullopt;
    std::string csv = "channel_txn_id,pay_id,amount,currency,status,paid_at\n";
    int64_t index = 0;
    auto drop_end = mode_.statement_drop;
    auto change_end = drop_end + mode_.statement_change_amount;
    auto duplicate_end = change_end + mode_.statement_duplicate;
    for (const auto& [id, p] : payments_) {
      if (p.status != "SUCCEEDED")
        continue;
      auto paid_at = paybus::format_rfc3339_ms(p.paid_at_ms);
      if (paid_at.compare(0, 10, date) != 0)
        continue;
      auto at = index++;
      if (at < drop_end)
        continue;
      auto amount = p.amount + (at < change_end ? 1 : 0);
      auto line = p.channel_txn_id + "," + p.pay_id + "," + std::to_string(amount) + ","
                  + p.currency + ",SUCCEEDED," + paid_at + "\n";
      csv += line;
      if (at >= change_end && at < duplicate_end)
        csv += line;
    }
    for (int64_t i = 0; i < mode_.statement_foreign; ++i)
      csv += channel_id_ + "-foreign-" + std::to_string(i + 1) + ",9" + std::to_string(100000 + i)
             + ",100,CNY,SUCCEEDED," + date + "T12:00:00.000Z\n";
    for (int64_t i = 0; i < mode_.statement_malformed; ++i)
      csv += channel_id_ + "-malformed-" + std::to_string(i + 1) + ",not a line\n";
    return csv;
  }

  std::string host_;
  uint16_t port_;
  uint16_t admin_port_;
  int admin_listener_ = -1;
  std::string channel_id_;
  bool warned_other_id_ = false;
  paybus::crypto::pkey_ptr key_;
  paybus::crypto::pkey_ptr bus_key_;
  sim_mode mode_;
  notifier notifier_;
  int epoll_ = -1;
  int listener_ = -1;
  std::map<int, std::unique_ptr<connection>> connections_;
  std::map<int, uint64_t> connection_ids_;
  uint64_t next_connection_id_ = 0;
  std::priority_queue<delayed_response, std::vector<delayed_response>,
                      std::greater<delayed_response>>
    delayed_;
  uint64_t delayed_sequence_ = 0;
  std::priority_queue<held_request, std::vector<held_request>, std::greater<held_request>> held_;
  uint64_t held_sequence_ = 0;
  std::map<std::string, payment> payments_;
  std::set<std::string> nonces_;
  uint64_t txn_counter_ = 0;
  std::mt19937_64 rng_{std::random_device{}()};
};

volatile std::sig_atomic_t simulator::stop_requested = 0;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"paybus-channel-sim: a payment channel stand-in speaking API.md section 4"};
  std::string listen, admin_listen, key_path, bus_key_path, channel_id;
  std::string mode_json;
  sim_mode mode;
  app.add_option("--listen", listen, "HOST:PORT")->required();
  app.add_option("--admin", admin_listen, "HOST:PORT serving /sim/* even while down");
  app.add_option("--key", key_path, "the channel's RSA private key (PEM)")->required();
  app.add_option("--bus-public-key", bus_key_path, "the bus's RSA public key (PEM)")->required();
  app.add_option("--channel-id", channel_id,
                 "the id the bus knows this channel by (default: the key file's name up to its "
                 "first dot: keys/sim-a.key.pem is sim-a)");
  app.add_option("--latency-min-ms", mode.latency_min_ms);
  app.add_option("--latency-max-ms", mode.latency_max_ms);
  app.add_option("--failed-ratio", mode.failed_ratio)->check(CLI::Range(0.0, 1.0));
  app.add_option("--accepted-ratio", mode.accepted_ratio)->check(CLI::Range(0.0, 1.0));
  app.add_option("--timeout-ratio", mode.timeout_ratio)->check(CLI::Range(0.0, 1.0));
  app
    .add_option("--pay-delay-ms", mode.pay_delay_ms,
                "pay requests wait this long before they are taken")
    ->check(CLI::Range(int64_t{0}, int64_t{3'600'000}));
  app.add_option("--notify-delay-ms", mode.notify_delay_ms);
  app.add_option("--notify-loss-ratio", mode.notify_loss_ratio)->check(CLI::Range(0.0, 1.0));
  app.add_option("--notify-duplicate-ratio", mode.notify_duplicate_ratio)
    ->check(CLI::Range(0.0, 1.0));
  app.add_flag("--down", mode.down, "start refusing connections");
  CLI11_PARSE(app, argc, argv);
  std::string host;
  uint16_t port = 0;
  if (!paybus::split_host_port(listen, host, port)) {
    std::fprintf(stderr, "paybus-channel-sim: --listen must be HOST:PORT\n");
    return 2;
  }
  std::string admin_host;
  uint16_t admin_port = 0;
  if (!admin_listen.empty() && !paybus::split_host_port(admin_listen, admin_host, admin_port)) {
    std::fprintf(stderr, "paybus-channel-sim: --admin must be HOST:PORT\n");
    return 2;
  }
  if (channel_id.empty()) {
    auto name = std::filesystem::path{key_path}.filename().string();
    channel_id = name.substr(0, name.find('.'));
  }
  auto valid_id = !channel_id.empty() && channel_id.size() <= 64
                  && std::all_of(channel_id.begin(), channel_id.end(), [](unsigned char c) {
                       return std::isalnum(c) || c == '-' || c == '_';
                     });
  if (!valid_id) {
    std::fprintf(stderr,
                 "paybus-channel-sim: cannot tell the channel's id from the key's file name "
                 "'%s': name it with --channel-id, as the bus's [[channels]] id says\n",
                 key_path.c_str());
    return 2;
  }
  std::string error;
  auto key = paybus::crypto::load_private_key(key_path, error);
  auto bus_key = key ? paybus::crypto::load_public_key(bus_key_path, error) : nullptr;
  if (!key || !bus_key) {
    std::fprintf(stderr, "paybus-channel-sim: %s\n", error.c_str());
    return 2;
  }
  if (mode.failed_ratio + mode.accepted_ratio + mode.timeout_ratio > 1.0) {
    std::fprintf(stderr, "paybus-channel-sim: the outcome ratios add up to more than 1\n");
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGTERM, [](int) { simulator::stop_requested = 1; });
  std::signal(SIGINT, [](int) { simulator::stop_requested = 1; });
  curl_global_init(CURL_GLOBAL_DEFAULT);
  int code = simulator{host, port, admin_port, channel_id, key, bus_key, mode}.run();
  curl_global_cleanup();
  return code;
}
