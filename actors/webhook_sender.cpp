#include "actors/webhook_sender.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <curl/curl.h>

#include "common/clock.hpp"
#include "common/signing.hpp"
#include "common/thread_name.hpp"

namespace paybus {

namespace {

std::string target_of(const std::string& url) {
  auto scheme = url.find("://");
  auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  return slash == std::string::npos ? "/" : url.substr(slash);
}

size_t discard(char*, size_t size, size_t count, void*) {
  return size * count;
}

struct transfer {
  uint64_t id = 0;
  webhook_delivery delivery;
  curl_slist* headers = nullptr;
  ~transfer() {
    curl_slist_free_all(headers);
  }
};

} // namespace

struct webhook_sender::core {
  std::map<std::string, notify_merchant> merchants;
  crypto::pkey_ptr bus_key;
  int64_t timeout_ms = 5000;
  done_function done;
  CURLM* multi = nullptr;
  std::mutex mutex;
  std::deque<std::pair<uint64_t, webhook_delivery>> waiting;
  bool stopping = false;
  std::thread thread;

  /// Signs `t`'s delivery now and puts it on the wire through `easy`; false
  /// if its merchant is not configured (nothing to sign with).
  bool start(CURL* easy, transfer& t) {
    auto merchant = merchants.find(t.delivery.merchant_id);
    if (merchant == merchants.end())
      return false;
    const auto& body = t.delivery.body;
    auto target = target_of(t.delivery.url);
    auto now = unix_now_ms();  // a fresh timestamp and nonce every attempt
    auto signature = merchant->second.rsa
                       ? sign_rsa(bus_key.get(), "POST", target, body, now)
                       : sign_hmac(merchant->second.secret, "POST", target, body, now);
    auto add = [&](const std::string& line) { t.headers = curl_slist_append(t.headers, line.c_str()); };
    add("Content-Type: application/json");
    add("Expect:");
    add("X-Paybus-Merchant: " + t.delivery.merchant_id);
    add("X-Paybus-Timestamp: " + signature.timestamp);
    add("X-Paybus-Nonce: " + signature.nonce);
    add("X-Paybus-Signature: " + signature.signature);
    add("X-Paybus-Event: " + t.delivery.event_id);
    curl_easy_reset(easy);  // connections stay in the multi handle's pool
    curl_easy_setopt(easy, CURLOPT_URL, t.delivery.url.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t.headers);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, &t);
    curl_multi_add_handle(multi, easy);
    return true;
  }

  void run() {
    name_this_thread("pb-webhook");
    std::vector<CURL*> idle;
    std::unordered_map<CURL*, std::unique_ptr<transfer>> busy;
    std::deque<std::pair<uint64_t, webhook_delivery>> taken;
    while (true) {
      {
        std::lock_guard<std::mutex> guard{mutex};
        if (stopping)
          break;
        taken.swap(waiting);
      }
      for (auto& [id, delivery] : taken) {
        auto t = std::make_unique<transfer>();
        t->id = id;
        t->delivery = std::move(delivery);
        CURL* easy = nullptr;
        if (!idle.empty()) {
          easy = idle.back();
          idle.pop_back();
        } else {
          easy = curl_easy_init();
        }
        if (easy == nullptr || !start(easy, *t)) {
          if (easy != nullptr)
            idle.push_back(easy);
          done(id, 0);
          continue;
        }
        busy.emplace(easy, std::move(t));
      }
      taken.clear();
      int running = 0;
      curl_multi_perform(multi, &running);
      int left = 0;
      while (CURLMsg* message = curl_multi_info_read(multi, &left)) {
        if (message->msg != CURLMSG_DONE)
          continue;
        CURL* easy = message->easy_handle;
        long status = 0;
        if (message->data.result == CURLE_OK)
          curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(multi, easy);
        auto found = busy.find(easy);
        if (found == busy.end())
          continue;  // not one of ours (cannot happen)
        uint64_t id = found->second->id;
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, nullptr);  // the transfer's list goes with it
        busy.erase(found);
        idle.push_back(easy);
        done(id, static_cast<int32_t>(status));
      }
      bool more = false;
      {
        std::lock_guard<std::mutex> guard{mutex};
        more = !waiting.empty();
      }
      if (!more)
        curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
    }
    // Stopping: what is in flight is abandoned (never reported).
    for (auto& [easy, t] : busy) {
      curl_multi_remove_handle(multi, easy);
      curl_easy_cleanup(easy);
    }
    busy.clear();
    for (CURL* easy : idle)
      curl_easy_cleanup(easy);
  }
};

webhook_sender::webhook_sender(const notifier_settings& settings, done_function done)
  : core_(std::make_unique<core>()) {
  auto& c = *core_;
  for (const auto& merchant : settings.merchants)
    c.merchants[merchant.id] = merchant;
  c.bus_key = settings.bus_key;
  c.timeout_ms = settings.timeout_ms;
  c.done = std::move(done);
  c.multi = curl_multi_init();
  // Keep-alive connections for as many deliveries as may be in flight.
  curl_multi_setopt(c.multi, CURLMOPT_MAXCONNECTS,
                    static_cast<long>(std::max<size_t>(1, settings.workers)));
  c.thread = std::thread{[&c] { c.run(); }};
}

webhook_sender::~webhook_sender() {
  {
    std::lock_guard<std::mutex> guard{core_->mutex};
    core_->stopping = true;
  }
  curl_multi_wakeup(core_->multi);
  core_->thread.join();
  curl_multi_cleanup(core_->multi);
}

void webhook_sender::send(uint64_t id, webhook_delivery delivery) {
  {
    std::lock_guard<std::mutex> guard{core_->mutex};
    core_->waiting.emplace_back(id, std::move(delivery));
  }
  curl_multi_wakeup(core_->multi);
}

} // namespace paybus
