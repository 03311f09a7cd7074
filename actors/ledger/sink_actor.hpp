#pragma once

// The database sink: feeds PostgreSQL from the local store's outbox.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/fwd.hpp>

#include "messages/interfaces.hpp"
#include "storage/database/pg_database.hpp"

namespace paybus {

class live_switches;

class local_store;
class metrics;

struct sink_actor_limits {
  size_t batch_rows = 500;
  int64_t idle_poll_ms = 1000;
  int64_t gather_ms = 20;  // wait after new rows appear, to batch them
  int64_t backoff_min_ms = 200;
  int64_t backoff_max_ms = 5000;
  // `degrade db_feed on`: no rows go to the database (the outbox keeps
  // them); resumed, the next poll delivers them.
  const live_switches* switches = nullptr;
  int64_t paused_poll_ms = 200;
};

/// The instance number this bus issues pay_ids under, until the registry
/// holds it for this store: entered at the sink's first connection, before
/// any row is sent. If the registry holds it for another instance, nothing
/// is sent and `refuse` is called (the bus stops).
struct sink_instance_claim {
  int32_t id = 0;
  std::string fingerprint;
  std::string uri;
  bool confirmed = true;
  std::function<void(const std::string&)> refuse;
};

/// Reads the outbox itself (reads are safe from any thread) and has
/// `writer` trim what the database holds: the store has one writer.
sink_actor spawn_sink(caf::actor_system& system, local_store& store, metrics& figures,
                      pg_database_options database, store_actor writer, sink_actor_limits limits,
                      sink_instance_claim claim = {});

}  // namespace paybus
