// The libcurl loop the channel client and the webhook sender share, against a
// real HTTP listener on 127.0.0.1 that holds every request until the test
// lets it answer: the slot limit, order, refused jobs, and stopping.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "actors/common/transfer_loop.hpp"

namespace {

using namespace std::chrono_literals;

/// Accepts connections; reads each request (headers only: the jobs here
/// are GETs) and answers 200 once `release()` allows one more answer.
class holding_server {
public:
  holding_server() {
    listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::listen(listener_, 64) == 0);
    socklen_t length = sizeof address;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length);
    port_ = ntohs(address.sin_port);
    acceptor_ = std::thread{[this] { accept_all(); }};
  }

  ~holding_server() {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      closing_ = true;
    }
    changed_.notify_all();
    ::shutdown(listener_, SHUT_RDWR);
    ::close(listener_);
    acceptor_.join();
    for (auto& connection : connections_)
      connection.join();
  }

  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }

  void release(int answers) {
    {
      std::lock_guard<std::mutex> guard{mutex_};
      allowed_ += answers;
    }
    changed_.notify_all();
  }

  /// Waits until `count` requests have arrived in all; false after 5 s.
  bool wait_arrived(int count) {
    std::unique_lock<std::mutex> lock{mutex_};
    return changed_.wait_for(lock, 5s, [&] { return arrived_ >= count; });
  }

  int arrived() {
    std::lock_guard<std::mutex> guard{mutex_};
    return arrived_;
  }

  int most_held_at_once() {
    std::lock_guard<std::mutex> guard{mutex_};
    return most_held_;
  }

  std::vector<std::string> paths() {
    std::lock_guard<std::mutex> guard{mutex_};
    return paths_;
  }

private:
  void accept_all() {
    while (true) {
      int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0)
        return;
      std::lock_guard<std::mutex> guard{mutex_};
      connections_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int fd) {
    std::string buffer;
    char chunk[4096];
    while (true) {
      auto end = buffer.find("\r\n\r\n");
      if (end == std::string::npos) {
        auto n = ::recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0)
          break;
        buffer.append(chunk, static_cast<size_t>(n));
        continue;
      }
      auto first_line = buffer.substr(0, buffer.find("\r\n"));
      buffer.erase(0, end + 4);
      std::unique_lock<std::mutex> lock{mutex_};
      ++arrived_;
      ++held_;
      most_held_ = std::max(most_held_, held_);
      paths_.push_back(first_line.substr(4, first_line.rfind(' ') - 4));
      changed_.notify_all();
      changed_.wait(lock, [&] { return closing_ || allowed_ > 0; });
      --held_;
      if (closing_)
        break;
      --allowed_;
      lock.unlock();
      const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
      ::send(fd, answer, sizeof answer - 1, MSG_NOSIGNAL);
    }
    ::close(fd);
  }

  int listener_ = -1;
  uint16_t port_ = 0;
  std::thread acceptor_;
  std::vector<std::thread> connections_;
  std::mutex mutex_;
  std::condition_variable changed_;
  int arrived_ = 0;
  int held_ = 0;
  int most_held_ = 0;
  int allowed_ = 0;
  bool closing_ = false;
  std::vector<std::string> paths_;
};

struct job {
  int number = 0;
  std::string url;
  bool sendable = true;
};

struct outcome {
  int number = 0;
  bool started = false;
  CURLcode code = CURLE_OK;
  long status = 0;
};

/// Finished jobs, as the loop's thread reports them.
struct reports {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<outcome> done;

  bool wait_for(size_t count) {
    std::unique_lock<std::mutex> lock{mutex};
    return changed.wait_for(lock, 5s, [&] { return done.size() >= count; });
  }

  size_t size() {
    std::lock_guard<std::mutex> guard{mutex};
    return done.size();
  }
};

std::unique_ptr<paybus::transfer_loop<job>> make_loop(size_t slots, reports& out,
                                                      size_t max_waiting = 4096) {
  paybus::transfer_loop<job>::hooks hooks{
    [] {
      CURL* easy = curl_easy_init();
      curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(easy, CURLOPT_PROXY, "");
      curl_easy_setopt(
        easy, CURLOPT_WRITEFUNCTION,
        +[](char*, size_t size, size_t count, void*) { return size * count; });
      return easy;
    },
    [](CURL* easy, job& j) {
      if (!j.sendable)
        return false;
      curl_easy_setopt(easy, CURLOPT_URL, j.url.c_str());
      return true;
    },
    [&out](std::unique_ptr<job> j, CURL* easy, CURLcode code) {
      outcome o{j->number, easy != nullptr, code, 0};
      if (easy != nullptr && code == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &o.status);
      std::lock_guard<std::mutex> guard{out.mutex};
      out.done.push_back(o);
      out.changed.notify_all();
    }};
  auto loop = std::make_unique<paybus::transfer_loop<job>>("pb-test", slots, std::move(hooks),
                                                           max_waiting);
  loop->start();
  return loop;
}

std::unique_ptr<job> make_job(int number, const holding_server& server, bool sendable = true) {
  auto j = std::make_unique<job>();
  j->number = number;
  j->url = server.url("/job/" + std::to_string(number));
  j->sendable = sendable;
  return j;
}

}  // namespace

TEST_CASE("no more transfers are on the wire than the loop has slots, and the rest wait in order") {
  holding_server server;
  reports out;
  auto loop = make_loop(2, out);
  for (int i = 0; i < 5; ++i)
    REQUIRE(loop->submit(make_job(i, server)));
  REQUIRE(server.wait_arrived(2));
  std::this_thread::sleep_for(200ms);  // room for a third to arrive, were it let out
  CHECK(server.arrived() == 2);
  CHECK(out.size() == 0);
  server.release(5);
  REQUIRE(out.wait_for(5));
  CHECK(server.most_held_at_once() == 2);
  // The first two submitted went first; two connections may then deliver
  // the later ones in either order.
  auto paths = server.paths();
  std::sort(paths.begin(), paths.begin() + 2);
  CHECK(std::vector<std::string>(paths.begin(), paths.begin() + 2)
        == std::vector<std::string>{"/job/0", "/job/1"});
  std::sort(paths.begin(), paths.end());
  CHECK(paths == std::vector<std::string>{"/job/0", "/job/1", "/job/2", "/job/3", "/job/4"});
  for (const auto& o : out.done) {
    CHECK(o.started);
    CHECK(o.code == CURLE_OK);
    CHECK(o.status == 200);
  }
}

TEST_CASE("a job its prepare hook refuses is reported unstarted and sends nothing") {
  holding_server server;
  reports out;
  auto loop = make_loop(4, out);
  REQUIRE(loop->submit(make_job(1, server, false)));
  REQUIRE(loop->submit(make_job(2, server)));
  server.release(1);
  REQUIRE(out.wait_for(2));
  std::lock_guard<std::mutex> guard{out.mutex};
  CHECK(out.done[0].number == 1);
  CHECK_FALSE(out.done[0].started);
  CHECK(out.done[1].number == 2);
  CHECK(out.done[1].status == 200);
  CHECK(server.paths() == std::vector<std::string>{"/job/2"});
}

TEST_CASE("beyond max_waiting a job is reported unstarted at once and sends nothing") {
  holding_server server;
  reports out;
  auto loop = make_loop(1, out, 1);
  REQUIRE(loop->submit(make_job(1, server)));
  REQUIRE(server.wait_arrived(1));             // 1 holds the slot
  REQUIRE(loop->submit(make_job(2, server)));  // waits
  REQUIRE(loop->submit(make_job(3, server)));  // one too many: reported now
  {
    std::lock_guard<std::mutex> guard{out.mutex};
    REQUIRE(out.done.size() == 1);
    CHECK(out.done[0].number == 3);
    CHECK_FALSE(out.done[0].started);
  }
  server.release(2);
  REQUIRE(out.wait_for(3));
  std::sort(out.done.begin(), out.done.end(),
            [](const outcome& a, const outcome& b) { return a.number < b.number; });
  CHECK(out.done[0].started);
  CHECK(out.done[1].started);
  auto paths = server.paths();
  std::sort(paths.begin(), paths.end());
  CHECK(paths == std::vector<std::string>{"/job/1", "/job/2"});
}

TEST_CASE("stopping abandons what is in flight and what waits, reports none, and takes no more") {
  holding_server server;
  reports out;
  auto loop = make_loop(1, out);
  REQUIRE(loop->submit(make_job(1, server)));
  REQUIRE(loop->submit(make_job(2, server)));
  REQUIRE(server.wait_arrived(1));
  loop->stop();
  CHECK_FALSE(loop->submit(make_job(3, server)));
  server.release(3);
  std::this_thread::sleep_for(100ms);
  CHECK(out.size() == 0);
  CHECK(server.arrived() == 1);
  loop.reset();
}
