#pragma once

// The cluster actor (API.md section 9): this instance as its peers see it,
// and its side of the membership. It connects to the peers it knows of (the
// configuration's seeds and the cluster addresses in paybus_instances),
// introduces itself, monitors each, and keeps the cluster_directory that the
// ingress and the admin actor forward with. A peer lost (its middleman's
// heartbeats stop, its connection drops) is marked down at once and tried
// again, and the registry is read again: it may have moved.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/fwd.hpp>

#include "actors/payment/order_shard.hpp"
#include "messages/interfaces.hpp"
#include "storage/database/pg_database.hpp"

namespace paybus {

class cluster_directory;
class local_store;
class metrics;
struct adopted_store;
class shared_slots;

struct cluster_settings {
  int32_t instance_id = 0;
  std::string fingerprint;         // this instance's row in paybus_instances
  std::string address;             // cluster.listen, registered as uri
  std::vector<std::string> seeds;  // cluster.peers
  bool tls = false;                // connect through the openssl manager (mutual TLS)
  pg_database_options database;
  reader_actor reader;
  store_actor writer;
  coordinator_actor coordinator;  // told of payments created for peers
  order_shard_settings shard;     // issues the pay_ids of those (a shard of its own)
  cluster_directory* directory = nullptr;
  shared_slots* slots = nullptr;
  metrics* figures = nullptr;
  // Adoption: opens a dead instance's store (checking that it is that
  // instance's), and then serves it (its writer, reader, coordinator, sink
  // and notifier on this process's channels). Set by paybusd.
  std::function<std::shared_ptr<local_store>(int32_t instance, const std::string& dir,
                                             std::string& error)>
    open_store;
  std::function<adopted_store(int32_t instance, const std::string& dir,
                              std::shared_ptr<local_store> store)>
    serve_store;
  // Called when a peer says it adopted this instance's number: the process stops.
  std::function<void(const std::string& why)> fenced;
  int64_t connect_timeout_ms = 5'000;
  int64_t retry_ms = 1'000;            // a lost or unreachable peer is tried again this often
  int64_t registry_every_ms = 30'000;  // and the registry read this often besides
};

cluster_actor spawn_cluster(caf::actor_system& system, cluster_settings settings);

/// The adopted stores as kept in the local store's admin family
/// ("adopted"): [{"instance_id": N, "store_dir": "..."}].
std::string encode_adopted(const std::vector<std::pair<int32_t, std::string>>& adopted);
std::optional<std::vector<std::pair<int32_t, std::string>>> decode_adopted(const std::string& text);

/// "7 127.0.0.1:9101" -> (7, "127.0.0.1:9101"); false if it is not that.
bool parse_member_line(const std::string& line, int32_t& instance, std::string& address);

}  // namespace paybus
