#pragma once

// The reconciliation actor of one channel (API.md section 7): runs on
// demand, and daily at `reconciliation.at` (UTC) for the previous day,
// tried again with backoff until it succeeds. Its repairs go through the
// store writer like any result; the store writer tells the coordinator.

#include <atomic>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>

#include "actors/reconcile/reconciler.hpp"
#include "common/crypto.hpp"
#include "messages/interfaces.hpp"

namespace paybus {

class live_switches;

class local_store;
class metrics;

struct reconciliation_settings {
  reconciliation::statement_source source;  // its keys below keep the pointers alive
  crypto::pkey_ptr bus_key;
  crypto::pkey_ptr channel_key;
  reconciliation::run_places places;
  std::string daily_at;  // "HH:MM" UTC; "": no daily run
  // Set when the bus stops: a run in progress gives up (no report), so that
  // a statement that downloads slowly never holds the stop up.
  std::shared_ptr<std::atomic<bool>> stopping;
  // `degrade reconciliation on`: the daily run waits (looked at again every
  // few seconds); a run asked for by an operator still runs.
  const live_switches* switches = nullptr;
};

reconciliation_actor spawn_reconciliation(caf::actor_system& system,
                                          reconciliation_settings settings, local_store& store,
                                          store_actor writer, metrics& figures);

}  // namespace paybus
