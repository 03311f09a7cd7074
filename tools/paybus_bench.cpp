// paybus-bench: a load generator that signs requests as a merchant would.
// Holds N keep-alive connections and either offers a fixed rate (open loop:
// latency counts from when each request was due, so a slow bus cannot hide
// behind coordinated omission) or runs flat out (closed loop), DEPTH requests
// in flight on each connection (1: as merchants' clients, which do not
// pipeline). With --new-connection every request opens a connection of its
// own and asks the bus to close it, as some merchants do. Prints throughput,
// latency percentiles, responses by status code and, given the bus's pid, its
// CPU time an acceptance.

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sstream>
#include <string>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>
#include <http_parser.h>

#include "common/crypto.hpp"
#include "config/settings.hpp"
#include "gateway/auth.hpp"

namespace {

int64_t now_us() {
  using namespace std::chrono;
  return duration_cast<microseconds>(steady_clock::now().time_since_epoch()).count();
}

struct options {
  std::string target = "127.0.0.1:8080";
  size_t connections = 64;
  double rate = 0;  // requests per second; 0 = flat out
  double duration_s = 10;
  size_t depth = 1;  // flat out: requests in flight per connection
  size_t max_inflight_per_connection = 32;
  bool new_connection = false;  // one connection a request, closed by the bus
  std::string merchant = "demo";
  std::string secret = "demo-secret";
  std::string prefix;
  int64_t amount_minor = 100;
  int pid = 0;
};

struct connection {
  int fd = -1;
  http_parser parser{};
  std::deque<int64_t> due_us;  // per request in flight, in order
  std::string out;             // bytes not yet written
  size_t out_offset = 0;
  int status = 0;
  bool connected = false;
  bool answered = false;  // --new-connection: its one request is answered
};

struct results {
  std::vector<uint32_t> latencies_us;
  std::map<int, uint64_t> by_status;
  uint64_t sent = 0;
  uint64_t connect_errors = 0;
  uint64_t closed = 0;
  uint64_t opened = 0;
};

/// User plus system CPU seconds of process `pid` so far; 0 when unknown.
double cpu_seconds(int pid) {
  std::ifstream stat{"/proc/" + std::to_string(pid) + "/stat"};
  std::string text;
  std::getline(stat, text);
  auto end_of_name = text.rfind(')');
  if (end_of_name == std::string::npos)
    return 0;
  // Fields after the name start at field 3 (state); utime and stime are 14 and 15.
  std::istringstream fields{text.substr(end_of_name + 2)};
  std::string field;
  unsigned long long utime = 0, stime = 0;
  for (int number = 3; number <= 15 && fields >> field; ++number) {
    if (number == 14)
      utime = std::stoull(field);
    else if (number == 15)
      stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

class bench {
public:
  explicit bench(options opts) : opts_(std::move(opts)) {
    run_id_ = opts_.prefix.empty() ? paybus::crypto::random_token(8) : opts_.prefix;
    settings_.on_headers_complete = [](http_parser* p) {
      static_cast<connection*>(p->data)->status = p->status_code;
      return 0;
    };
    settings_.on_message_complete = [](http_parser* p) {
      auto* conn = static_cast<connection*>(p->data);
      auto* self = current_;
      self->on_response(*conn);
      return 0;
    };
  }

  int run() {
    std::string host;
    uint16_t port = 0;
    if (!paybus::split_host_port(opts_.target, host, port)) {
      std::fprintf(stderr, "paybus-bench: --target must be HOST:PORT\n");
      return 2;
    }
    epoll_ = epoll_create1(0);
    if (inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host.c_str(), &address_.sin_addr)
        != 1) {
      std::fprintf(stderr, "paybus-bench: --target must be an IPv4 address and a port\n");
      return 2;
    }
    address_.sin_family = AF_INET;
    address_.sin_port = htons(port);
    if (opts_.new_connection)
      opts_.depth = 1;
    conns_.resize(opts_.connections);
    for (auto& conn : conns_)
      if (!open(conn))
        ++results_.connect_errors;
    current_ = this;
    if (opts_.pid > 0)
      bus_cpu_start_ = cpu_seconds(opts_.pid);
    start_us_ = now_us();
    int64_t end_us = start_us_ + static_cast<int64_t>(opts_.duration_s * 1e6);
    int64_t drain_until = end_us + 5'000'000;
    bool open_loop = opts_.rate > 0;
    if (!open_loop)
      for (auto& conn : conns_)
        for (size_t i = 0; i < opts_.depth && conn.connected; ++i)
          send_request(conn, now_us());
    std::vector<epoll_event> events(256);
    while (true) {
      int64_t now = now_us();
      if (now >= end_us) {
        stopping_ = true;
        if (inflight_ == 0 && backlog_.empty())
          break;
        if (now >= drain_until)
          break;
      }
      if (open_loop && !stopping_) {
        auto due = static_cast<uint64_t>((now - start_us_) * opts_.rate / 1e6);
        while (scheduled_ < due) {
          backlog_.push_back(start_us_ + static_cast<int64_t>(scheduled_ * 1e6 / opts_.rate));
          ++scheduled_;
        }
        dispatch_backlog();
      }
      int n = epoll_wait(epoll_, events.data(), static_cast<int>(events.size()),
                         open_loop ? 1 : 10);
      for (int i = 0; i < n; ++i) {
        auto* conn = static_cast<connection*>(events[i].data.ptr);
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
          read(*conn);
        if (conn->fd >= 0 && (events[i].events & EPOLLOUT))
          write(*conn);
      }
    }
    if (opts_.pid > 0)
      bus_cpu_ = cpu_seconds(opts_.pid) - bus_cpu_start_;
    report(now_us() - start_us_);
    return 0;
  }

private:
  /// Connects `conn`. A connection a request (--new-connection) connects
  /// without waiting: its request is written once the connection is up.
  bool open(connection& conn) {
    conn.fd = socket(AF_INET, SOCK_STREAM | (opts_.new_connection ? SOCK_NONBLOCK : 0), 0);
    if (connect(conn.fd, reinterpret_cast<const sockaddr*>(&address_), sizeof(address_)) != 0
        && errno != EINPROGRESS) {
      ::close(conn.fd);
      conn.fd = -1;
      return false;
    }
    ++results_.opened;
    int one = 1;
    setsockopt(conn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    fcntl(conn.fd, F_SETFL, fcntl(conn.fd, F_GETFL) | O_NONBLOCK);
    http_parser_init(&conn.parser, HTTP_RESPONSE);
    conn.parser.data = &conn;
    conn.connected = true;
    conn.answered = false;
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLET;
    event.data.ptr = &conn;
    epoll_ctl(epoll_, EPOLL_CTL_ADD, conn.fd, &event);
    return true;
  }

  void dispatch_backlog() {
    while (!backlog_.empty()) {
      connection* best = nullptr;
      for (size_t tried = 0; tried < conns_.size(); ++tried) {
        auto& conn = conns_[next_conn_++ % conns_.size()];
        size_t room = opts_.new_connection ? 1 : opts_.max_inflight_per_connection;
        if (conn.connected && !conn.answered && conn.due_us.size() < room) {
          best = &conn;
          break;
        }
      }
      if (best == nullptr)
        return;
      send_request(*best, backlog_.front());
      backlog_.pop_front();
    }
  }

  void send_request(connection& conn, int64_t due_us) {
    char number[64];
    std::snprintf(number, sizeof(number), "B%s-%llu", run_id_.c_str(),
                  static_cast<unsigned long long>(results_.sent));
    std::string body = std::string{"{\"merchant_order_no\":\""} + number
                       + "\",\"amount\":" + std::to_string(opts_.amount_minor)
                       + ",\"currency\":\"CNY\",\"subject\":\"bench\"}";
    auto timestamp = std::to_string(std::time(nullptr));
    char nonce[64];
    std::snprintf(nonce, sizeof(nonce), "n%s%016llu", run_id_.c_str(),
                  static_cast<unsigned long long>(results_.sent));
    auto canonical = paybus::canonical_string("POST", "/v1/payments", timestamp, nonce, body);
    auto signature = paybus::crypto::hmac_sha256_hex(opts_.secret, canonical);
    std::string request = "POST /v1/payments HTTP/1.1\r\nHost: bench\r\n"
                          "Content-Type: application/json\r\nX-Paybus-Merchant: "
                          + opts_.merchant + "\r\nX-Paybus-Timestamp: " + timestamp
                          + "\r\nX-Paybus-Nonce: " + nonce + "\r\nX-Paybus-Signature: hmac-sha256="
                          + signature + "\r\nContent-Length: " + std::to_string(body.size())
                          + (opts_.new_connection ? "\r\nConnection: close" : "") + "\r\n\r\n"
                          + body;
    conn.out.append(request);
    conn.due_us.push_back(due_us);
    ++results_.sent;
    ++inflight_;
    write(conn);
  }

  void write(connection& conn) {
    while (conn.out_offset < conn.out.size()) {
      ssize_t n = ::send(conn.fd, conn.out.data() + conn.out_offset,
                         conn.out.size() - conn.out_offset, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
          return;
        fail(conn);
        return;
      }
      conn.out_offset += static_cast<size_t>(n);
    }
    conn.out.clear();
    conn.out_offset = 0;
  }

  void read(connection& conn) {
    char buffer[65536];
    while (conn.fd >= 0) {
      ssize_t n = ::recv(conn.fd, buffer, sizeof(buffer), 0);
      if (n > 0) {
        size_t parsed = http_parser_execute(&conn.parser, &settings_, buffer,
                                            static_cast<size_t>(n));
        if (parsed != static_cast<size_t>(n)) {
          fail(conn);
          return;
        }
      } else if (n == 0) {
        if (conn.answered) {
          reopen(conn);  // --new-connection: the bus closed it after its answer
          return;
        }
        fail(conn);
        return;
      } else {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
          fail(conn);
        return;
      }
    }
  }

  void on_response(connection& conn) {
    if (conn.due_us.empty())
      return;
    int64_t latency = now_us() - conn.due_us.front();
    conn.due_us.pop_front();
    --inflight_;
    results_.latencies_us.push_back(static_cast<uint32_t>(std::min<int64_t>(latency, UINT32_MAX)));
    ++results_.by_status[conn.status];
    if (opts_.new_connection) {
      conn.answered = true;  // the next request waits for a connection of its own
      return;
    }
    if (opts_.rate <= 0 && !stopping_)
      send_request(conn, now_us());
    else if (opts_.rate > 0)
      dispatch_backlog();
  }

  /// --new-connection: closes the answered connection and opens the next
  /// one, with the next request (flat out) or for the backlog (open loop).
  void reopen(connection& conn) {
    epoll_ctl(epoll_, EPOLL_CTL_DEL, conn.fd, nullptr);
    ::close(conn.fd);
    conn.fd = -1;
    conn.connected = false;
    conn.out.clear();
    conn.out_offset = 0;
    if (stopping_)
      return;
    if (!open(conn)) {
      ++results_.connect_errors;
      return;
    }
    if (opts_.rate <= 0)
      send_request(conn, now_us());
    else
      dispatch_backlog();
  }

  void fail(connection& conn) {
    if (conn.fd < 0)
      return;
    epoll_ctl(epoll_, EPOLL_CTL_DEL, conn.fd, nullptr);
    ::close(conn.fd);
    conn.fd = -1;
    conn.connected = false;
    ++results_.closed;
    inflight_ -= static_cast<int64_t>(conn.due_us.size());
    results_.by_status[0] += conn.due_us.size();
    conn.due_us.clear();
  }

  static double percentile(const std::vector<uint32_t>& sorted, double p) {
    if (sorted.empty())
      return 0;
    auto index = static_cast<size_t>(p / 100.0 * static_cast<double>(sorted.size() - 1));
    return sorted[index] / 1000.0;
  }

  void report(int64_t elapsed_us) {
    auto& lat = results_.latencies_us;
    std::sort(lat.begin(), lat.end());
    double seconds = static_cast<double>(elapsed_us) / 1e6;
    uint64_t ok = 0;
    for (auto& [status, count] : results_.by_status)
      if (status >= 200 && status < 300)
        ok += count;
    std::printf("paybus-bench: target %s, %zu connections, %s, %.1f s\n", opts_.target.c_str(),
                opts_.connections,
                (opts_.rate > 0
                   ? "open loop " + std::to_string(static_cast<int64_t>(opts_.rate)) + "/s offered"
                   : "flat out, depth " + std::to_string(opts_.depth))
                  .append(opts_.new_connection ? ", a new connection a request" : "")
                  .c_str(),
                seconds);
    std::printf("requests: sent %llu, answered %zu, 2xx %llu\n",
                static_cast<unsigned long long>(results_.sent), lat.size(),
                static_cast<unsigned long long>(ok));
    std::printf("throughput: %.0f answered/s, %.0f 2xx/s\n",
                static_cast<double>(lat.size()) / opts_.duration_s,
                static_cast<double>(ok) / opts_.duration_s);
    std::printf("latency ms: p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n",
                percentile(lat, 50), percentile(lat, 90), percentile(lat, 99),
                percentile(lat, 99.9), lat.empty() ? 0.0 : lat.back() / 1000.0);
    std::printf("status:");
    for (auto& [status, count] : results_.by_status)
      std::printf(" %s=%llu", status == 0 ? "unanswered" : std::to_string(status).c_str(),
                  static_cast<unsigned long long>(count));
    std::printf("\nerrors: connect %llu, closed %llu, never sent %zu\n",
                static_cast<unsigned long long>(results_.connect_errors),
                static_cast<unsigned long long>(results_.closed), backlog_.size());
    if (opts_.new_connection)
      std::printf("connections opened: %llu\n", static_cast<unsigned long long>(results_.opened));
    if (opts_.pid > 0) {
      std::ifstream status{"/proc/" + std::to_string(opts_.pid) + "/status"};
      std::string line;
      while (std::getline(status, line))
        if (line.rfind("VmRSS", 0) == 0 || line.rfind("VmHWM", 0) == 0)
          std::printf("bus %s\n", line.c_str());
      std::printf("bus CPU: %.2f s, %.1f us a 2xx\n", bus_cpu_,
                  ok == 0 ? 0.0 : bus_cpu_ * 1e6 / static_cast<double>(ok));
    }
  }

  static bench* current_;
  options opts_;
  std::string run_id_;
  http_parser_settings settings_{};
  std::vector<connection> conns_;
  std::deque<int64_t> backlog_;
  int epoll_ = -1;
  sockaddr_in address_{};
  double bus_cpu_start_ = 0;
  double bus_cpu_ = 0;
  int64_t start_us_ = 0;
  int64_t inflight_ = 0;
  uint64_t scheduled_ = 0;
  size_t next_conn_ = 0;
  bool stopping_ = false;
  results results_;
};

bench* bench::current_ = nullptr;

}  // namespace

int main(int argc, char** argv) {
  options opts;
  CLI::App app{"paybus-bench: signed payment load against a running paybusd"};
  app.add_option("--target", opts.target, "HOST:PORT of paybusd");
  app.add_option("--connections,-c", opts.connections, "keep-alive connections")
    ->check(CLI::Range(1, 20000));
  app.add_option("--rate,-r", opts.rate, "offered requests/s (open loop); 0 = flat out");
  app.add_option("--duration,-d", opts.duration_s, "seconds of load")
    ->check(CLI::Range(0.1, 3600.0));
  app.add_option("--depth", opts.depth, "flat out: requests in flight per connection")
    ->check(CLI::Range(1, 1024));
  app.add_flag("--new-connection", opts.new_connection,
               "every request on a connection of its own, closed by the bus after its answer");
  app.add_option("--merchant", opts.merchant, "merchant id");
  app.add_option("--secret", opts.secret, "merchant HMAC secret");
  app.add_option("--prefix", opts.prefix, "merchant_order_no prefix (default: random)");
  app.add_option("--pid", opts.pid,
                 "paybusd's pid: print its resident memory and its CPU an acceptance");
  CLI11_PARSE(app, argc, argv);
  std::signal(SIGPIPE, SIG_IGN);
  bench run{opts};
  return run.run();
}
