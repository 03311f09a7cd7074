#include "actors/webhook/webhook_sender.hpp"

#include <algorithm>
#include <limits>
#include <map>
#include <memory>
#include <string>

#include <curl/curl.h>

#include "actors/common/transfer_loop.hpp"
#include "common/clock.hpp"
#include "common/signing.hpp"

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

}  // namespace

struct webhook_sender::core {
  std::map<std::string, notify_merchant> merchants;
  crypto::pkey_ptr bus_key;
  int64_t timeout_ms = 5000;
  done_function done;
  std::unique_ptr<transfer_loop<transfer>> loop;

  /// Signs `t`'s delivery now and sets it on `easy`; false if its merchant
  /// is not configured (nothing to sign with).
  bool prepare(CURL* easy, transfer& t) const {
    auto merchant = merchants.find(t.delivery.merchant_id);
    if (merchant == merchants.end())
      return false;
    const auto& body = t.delivery.body;
    auto target = target_of(t.delivery.url);
    auto now = unix_now_ms();  // a fresh timestamp and nonce every attempt
    auto signature = merchant->second.rsa
                       ? sign_rsa(bus_key.get(), "POST", target, body, now)
                       : sign_hmac(merchant->second.secret, "POST", target, body, now);
    auto add = [&](const std::string& line) {
      t.headers = curl_slist_append(t.headers, line.c_str());
    };
    add("Content-Type: application/json");
    add("Expect:");
    add("X-Paybus-Merchant: " + t.delivery.merchant_id);
    add("X-Paybus-Timestamp: " + signature.timestamp);
    add("X-Paybus-Nonce: " + signature.nonce);
    add("X-Paybus-Signature: " + signature.signature);
    add("X-Paybus-Event: " + t.delivery.event_id);
    curl_easy_reset(easy);  // each delivery has its own target; connections stay pooled
    curl_easy_setopt(easy, CURLOPT_URL, t.delivery.url.c_str());
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t.headers);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body.c_str());
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_ms));
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
    return true;
  }

  void finished(std::unique_ptr<transfer> t, CURL* easy, CURLcode code) const {
    long status = 0;
    if (easy != nullptr && code == CURLE_OK)
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    done(t->id, static_cast<int32_t>(status));
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
  // No slot limit here: the notifier keeps deliveries in flight to its
  // capacity and shares them out among merchants.
  c.loop = std::make_unique<transfer_loop<transfer>>(
    "pb-webhook", std::numeric_limits<size_t>::max(),
    transfer_loop<transfer>::hooks{[] { return curl_easy_init(); },
                                   [&c](CURL* easy, transfer& t) { return c.prepare(easy, t); },
                                   [&c](std::unique_ptr<transfer> t, CURL* easy, CURLcode code) {
                                     c.finished(std::move(t), easy, code);
                                   }});
  // Keep-alive connections for as many deliveries as may be in flight.
  curl_multi_setopt(c.loop->multi(), CURLMOPT_MAXCONNECTS,
                    static_cast<long>(std::max<size_t>(1, settings.workers)));
  c.loop->start();
}

webhook_sender::~webhook_sender() {
  core_->loop->stop();
}

void webhook_sender::send(uint64_t id, webhook_delivery delivery) {
  auto t = std::make_unique<transfer>();
  t->id = id;
  t->delivery = std::move(delivery);
  core_->loop->submit(std::move(t));
}

}  // namespace paybus
