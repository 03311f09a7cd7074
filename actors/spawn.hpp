#pragma once

// Spawn functions of the core actors. Each actor's state is private to its
// .cpp; only these constructors are shared.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

#include "common/crypto.hpp"
#include "messages/interfaces.hpp"
#include "storage/pg_database.hpp"

namespace paybus {

class local_store;
class metrics;

struct store_actor_limits {
  size_t max_batch_writes = 2048;          // creates per synced batch
  int64_t gather_us = 0;                   // least time from one commit's start to the next
  int64_t nonce_delay_ms = 50;             // nonces wait this long for a commit to ride with
  int64_t housekeeping_interval_ms = 1000;
};

struct sink_actor_limits {
  size_t batch_rows = 500;
  int64_t idle_poll_ms = 1000;
  int64_t gather_ms = 20;  // wait after new rows appear, to batch them
  int64_t backoff_min_ms = 200;
  int64_t backoff_max_ms = 5000;
};

/// How the store writer tells the database sink that the outbox grew,
/// without waking it once a commit: a wake is sent only if none is owed
/// since the sink last began a round, which reads everything committed
/// before it began.
class sink_doorbell {
public:
  /// The writer, after a commit: true if the sink must be sent a wake.
  bool ring() {
    return !rung_.exchange(true);
  }
  /// The sink, as a round begins and before it reads the outbox.
  void answer() {
    rung_.exchange(false);
  }

private:
  std::atomic<bool> rung_{false};
};

/// The store's single writer. `store` and `figures` outlive the actor system.
store_actor spawn_store(caf::actor_system& system, local_store& store,
                        metrics& figures, sink_actor sink,
                        std::shared_ptr<sink_doorbell> doorbell,
                        store_actor_limits limits);

reader_actor spawn_reader(caf::actor_system& system, local_store& store);

sink_actor spawn_sink(caf::actor_system& system, local_store& store,
                      metrics& figures, pg_database_options database,
                      std::shared_ptr<sink_doorbell> doorbell, sink_actor_limits limits);

struct channel_settings_runtime {
  std::string id;
  std::string url;                 // base URL, e.g. http://127.0.0.1:9001
  std::string ca_file;             // https: certificates that verify the channel's; empty: the system's
  std::string notify_url;          // {public_url}/v1/channels/{id}/notify
  crypto::pkey_ptr bus_key;        // signs requests
  crypto::pkey_ptr channel_key;    // verifies the channel's answers
  int64_t timeout_ms = 3000;
  size_t concurrency = 4;          // requests in flight at once
  size_t max_queue = 256;          // beyond it: UNAVAILABLE, nothing sent
  int breaker_failures = 5;        // consecutive UNKNOWNs that open the breaker
  int64_t breaker_open_ms = 5000;  // then one probe
  int64_t window_seconds = 300;
};

channel_actor spawn_channel(caf::actor_system& system, channel_settings_runtime settings,
                            metrics& figures);

struct coordinator_channel {
  std::string id;
  int64_t weight = 0;
  channel_actor handle;
  size_t max_in_flight = 16;  // requests the coordinator keeps outstanding
  int64_t settle_ms = 10'000;  // a NOT_FOUND is believed this long after a pay request left
};

struct notify_merchant {
  std::string id;
  bool rsa = false;
  std::string secret;       // hmac merchants
  std::string default_url;  // the merchant's notify_url, if any
};

struct notifier_settings {
  std::vector<notify_merchant> merchants;
  crypto::pkey_ptr bus_key;        // signs for rsa merchants
  size_t workers = 64;             // deliveries in flight at once
  int64_t timeout_ms = 5000;       // per attempt
  int64_t retry_base_ms = 1000;    // first retry; doubles each time
  int64_t retry_max_ms = 3'600'000;
  int64_t give_up_after_ms = 25 * 3'600'000;  // then logged and dropped
  int64_t poll_ms = 200;
};

notifier_actor spawn_notifier(caf::actor_system& system, local_store& store,
                              notifier_settings settings, metrics& figures);

/// The coordinator keeps at most `max_in_memory` payments in memory; the
/// others wait in the store's dispatch family and are read in (through the
/// reader, oldest first) as room frees up. It starts by reading the
/// payments left unfinished before the start.
coordinator_actor spawn_coordinator(caf::actor_system& system, store_actor store,
                                    reader_actor reader,
                                    std::vector<coordinator_channel> channels,
                                    size_t max_in_memory, metrics& figures);

} // namespace paybus
