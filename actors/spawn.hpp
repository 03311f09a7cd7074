#pragma once

// Spawn functions of the core actors. Each actor's state is private to its
// .cpp; only these constructors are shared.

#include <chrono>
#include <cstdint>

#include <caf/fwd.hpp>

#include "messages/interfaces.hpp"
#include "storage/pg_database.hpp"

namespace paybus {

class local_store;
class metrics;

struct store_actor_limits {
  size_t max_batch_writes = 2048;          // creates per synced batch
  int64_t housekeeping_interval_ms = 1000;
};

struct sink_actor_limits {
  size_t batch_rows = 500;
  int64_t idle_poll_ms = 1000;
  int64_t gather_ms = 20;  // wait after new rows appear, to batch them
  int64_t backoff_min_ms = 200;
  int64_t backoff_max_ms = 5000;
};

/// The store's single writer. `store` and `figures` outlive the actor system.
store_actor spawn_store(caf::actor_system& system, local_store& store,
                        metrics& figures, sink_actor sink,
                        store_actor_limits limits);

reader_actor spawn_reader(caf::actor_system& system, local_store& store);

sink_actor spawn_sink(caf::actor_system& system, local_store& store,
                      metrics& figures, pg_database_options database,
                      sink_actor_limits limits);

struct order_shard_settings {
  int32_t instance_id = 0;
  int32_t shard = 0;
  int64_t pay_id_floor_ms = 0;
};

order_actor spawn_order_shard(caf::actor_system& system, store_actor store,
                              order_shard_settings settings);

} // namespace paybus
