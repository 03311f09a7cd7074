#pragma once

// The coordinator: drives each payment from acceptance to a final result.

#include <cstdint>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

#include "messages/interfaces.hpp"

namespace paybus {

class metrics;
class live_switches;

struct coordinator_channel {
  std::string id;
  int64_t weight = 0;
  channel_actor handle;
  size_t max_in_flight = 16;   // requests the coordinator keeps outstanding
  int64_t settle_ms = 10'000;  // a NOT_FOUND is believed this long after a pay request left
};

/// The coordinator keeps at most `max_in_memory` payments in memory; the
/// others wait in the store's dispatch family and are read in (through the
/// reader, oldest first) as room frees up. It starts by reading the
/// payments left unfinished before the start. `switches` (may be null): the
/// operator's weights, enabled channels and the order-repair pause, taken
/// over whenever they change.
coordinator_actor spawn_coordinator(caf::actor_system& system, store_actor store,
                                    reader_actor reader, std::vector<coordinator_channel> channels,
                                    size_t max_in_memory, metrics& figures,
                                    const live_switches* switches = nullptr);

}  // namespace paybus
