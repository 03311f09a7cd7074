#pragma once

// The admin actor (API.md section 8): answers paybus-admin's commands from
// the live bus. It changes the operator's switches (live_switches), and has
// every change written to the local store's admin family with who made it
// and when before it takes effect; it asks the reader, the store writer and
// the reconciliation actors for what they own, so that it never blocks a
// scheduler thread.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/fwd.hpp>

#include "common/certificates.hpp"
#include "messages/interfaces.hpp"

namespace paybus {

class cluster_directory;
class live_switches;
class metrics;
struct switch_state;

struct admin_settings {
  int32_t instance_id = 0;
  std::string version;
  int64_t started_unix_ms = 0;
  live_switches* switches = nullptr;
  metrics* figures = nullptr;
  store_actor writer;
  reader_actor reader;
  std::map<std::string, reconciliation_actor> reconcilers;
  std::vector<std::string> audit;  // the last entries kept (JSON), oldest first
  // Set with mutual TLS: each command must come signed with a certificate
  // from admin.cafile, whose subject is who made it; else "local".
  std::shared_ptr<const crypto::certificate_verifier> verifier;
  int64_t store_timeout_ms = 30'000;
  // With peers: another instance's payment is asked of its owner.
  const cluster_directory* cluster = nullptr;
  cluster_actor cluster_handle;  // `cluster status` and `cluster form`
};

admin_actor spawn_admin(caf::actor_system& system, admin_settings settings);

/// Shows the switches in /metrics (paybus_channel_weight, _enabled,
/// paybus_degraded); at start and after each change.
void show_switches(metrics& figures, const switch_state& state);

/// The key of an audit entry in the admin family: "audit/", the time and a
/// number, both 8 bytes big-endian (so keys sort by time).
std::string admin_audit_key(int64_t at_ms, uint64_t number);

}  // namespace paybus
