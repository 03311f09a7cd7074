#pragma once

// The notifier: delivers merchant webhooks from the local store's outbox.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

#include "common/crypto.hpp"
#include "messages/interfaces.hpp"

namespace paybus {

class live_switches;

class local_store;
class metrics;

struct notify_merchant {
  std::string id;
  bool rsa = false;
  std::string secret;       // hmac merchants
  std::string default_url;  // the merchant's notify_url, if any
};

struct notifier_settings {
  std::vector<notify_merchant> merchants;
  crypto::pkey_ptr bus_key;      // signs for rsa merchants
  size_t workers = 64;           // deliveries in flight at once
  int64_t timeout_ms = 5000;     // per attempt
  int64_t retry_base_ms = 1000;  // first retry; doubles each time
  int64_t retry_max_ms = 3'600'000;
  int64_t give_up_after_ms = 25 * 3'600'000;  // then logged and dropped
  int64_t untargeted_wait_ms = 60'000;        // no URL to go to: looked at again then
  int64_t poll_ms = 200;
  // `degrade webhooks on`: no delivery starts (what waits stays in the
  // outbox); resumed, the next poll delivers it.
  const live_switches* switches = nullptr;
};

/// Reads due webhooks from `store` and has `writer` apply every outcome.
notifier_actor spawn_notifier(caf::actor_system& system, local_store& store, store_actor writer,
                              notifier_settings settings, metrics& figures);

}  // namespace paybus
