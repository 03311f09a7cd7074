#pragma once

// The database sink: feeds PostgreSQL from the local store's outbox.

#include <atomic>
#include <cstdint>
#include <memory>

#include <caf/fwd.hpp>

#include "messages/interfaces.hpp"
#include "storage/database/pg_database.hpp"

namespace paybus {

class local_store;
class metrics;

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

sink_actor spawn_sink(caf::actor_system& system, local_store& store,
                      metrics& figures, pg_database_options database,
                      std::shared_ptr<sink_doorbell> doorbell, sink_actor_limits limits);

} // namespace paybus
