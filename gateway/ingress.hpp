#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include <caf/fwd.hpp>
#include <caf/io/fwd.hpp>

#include "actors/payment/order_shard.hpp"
#include "gateway/auth.hpp"
#include "gateway/http.hpp"
#include "gateway/validation.hpp"
#include "messages/interfaces.hpp"

namespace paybus {

class cluster_directory;
class local_store;
class metrics;
class shared_slots;

/// Everything the HTTP ingress needs, fixed at start-up.
struct ingress_context {
  http_limits http;
  order_limits orders;
  size_t max_connections = 10000;
  int64_t max_inflight = 8192;
  size_t max_pipeline = 64;
  int64_t header_timeout_ms = 10'000;
  int64_t body_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 60'000;
  std::chrono::milliseconds request_timeout{10'000};
  std::chrono::microseconds gather{0};  // creates wait this long to go out together
  int64_t timestamp_window_seconds = 300;
  std::unordered_map<std::string, merchant_credentials> merchants;
  std::set<std::string> channels;
  std::vector<order_shard_settings> shards;  // the ingress issues pay_ids with these
  reader_actor reader;
  store_actor store;
  coordinator_actor coordinator;
  std::unordered_map<std::string, crypto::pkey_ptr> channel_keys;  // verify notifications
  // POST /v1/admin/reconcile: a loopback client signing with the bus's own
  // key runs a channel's reconciliation actor.
  crypto::pkey_ptr bus_key;
  std::unordered_map<std::string, reconciliation_actor> reconcilers;
  metrics* figures = nullptr;
  local_store* store_reads = nullptr;  // nonce look-ups (memory and block cache)
  int64_t recent_nonce_ms = 10'000;    // nonces also kept in memory this long
  // With peers (cluster.listen): who serves another instance's pay_ids.
  // Null for an instance alone.
  const cluster_directory* cluster = nullptr;
  const shared_slots* slots = nullptr;  // set with `cluster`
  std::chrono::milliseconds forward_timeout{5'000};
};

/// Spawns the HTTP ingress broker on an already bound listening socket.
/// Send it `drain_atom` to stop accepting and finish what is in flight.
caf::actor spawn_ingress(caf::actor_system& system, caf::intrusive_ptr<caf::io::doorman> listener,
                         std::shared_ptr<const ingress_context> context);

}  // namespace paybus
