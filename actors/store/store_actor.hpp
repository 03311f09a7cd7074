#pragma once

// The local store's single writer and its reader.

#include <cstdint>
#include <memory>

#include <caf/fwd.hpp>

#include "actors/payment/settlement.hpp"
#include "messages/interfaces.hpp"

namespace paybus {

class local_store;
class metrics;

struct store_actor_limits {
  size_t max_batch_writes = 2048;  // creates per synced batch
  int64_t gather_us = 0;           // least time from one commit's start to the next
  int64_t nonce_delay_ms = 50;     // nonces wait this long for a commit to ride with
  int64_t housekeeping_interval_ms = 1000;
};

/// The store's single writer: gathers requests, settles them (the pure rules
/// of actors/payment/settlement.hpp) and commits each batch synced. `store`
/// and `figures` outlive the actor system. It wakes the database sink and
/// the notifier once told of them (attach_atom).
store_actor spawn_store(caf::actor_system& system, local_store& store, metrics& figures,
                        store_actor_limits limits, settlement_policy policy = {});

/// Reads payments off the writer's thread.
reader_actor spawn_reader(caf::actor_system& system, local_store& store);

}  // namespace paybus
