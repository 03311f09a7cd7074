#pragma once

// One actor per payment channel: signs, sends, verifies, limits concurrency
// and breaks the circuit.

#include <cstdint>
#include <string>

#include <caf/fwd.hpp>

#include "common/crypto.hpp"
#include "messages/interfaces.hpp"

namespace paybus {

class metrics;
class live_switches;

struct channel_settings_runtime {
  std::string id;
  std::string url;           // base URL, e.g. http://127.0.0.1:9001
  std::string ca_file;       // https: certificates that verify the channel's; empty: the system's
  std::string notify_url;    // {public_url}/v1/channels/{id}/notify
  crypto::pkey_ptr bus_key;  // signs requests
  crypto::pkey_ptr channel_key;  // verifies the channel's answers
  int64_t timeout_ms = 3000;
  size_t concurrency = 4;          // requests in flight at once
  size_t max_queue = 256;          // beyond it: UNAVAILABLE, nothing sent
  int breaker_failures = 5;        // consecutive UNKNOWNs that open the breaker
  int64_t breaker_open_ms = 5000;  // then one probe
  int64_t window_seconds = 300;
  const live_switches* switches = nullptr;  // the operator may hold the breaker open
};

channel_actor spawn_channel(caf::actor_system& system, channel_settings_runtime settings,
                            metrics& figures);

}  // namespace paybus
