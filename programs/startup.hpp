#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "config/settings.hpp"

namespace paybus {

class local_store;

/// The fingerprint stores made before they kept a random one: hex SHA-256
/// of host name and the absolute data directory, 32 characters (which
/// containers started from one image share).
std::string legacy_instance_fingerprint(const std::string& data_dir);

/// Who this instance is: its number, and the fingerprint it is registered
/// under in paybus_instances (random, made once with the store, kept in it).
struct instance_identity {
  int32_t id = 0;
  std::string fingerprint;
  bool confirmed = false;  // the registry holds this number for this fingerprint
};

/// Finds this instance's number: remembered in the store, else registered in
/// paybus_instances (and then remembered), else the configured
/// node.instance_id, entered in the registry as soon as it can be (by the
/// database sink). A remembered number the registry holds for another
/// fingerprint is refused. Returns nullopt with one line in `error` if
/// none works.
std::optional<instance_identity> resolve_instance(local_store& store, const settings& config,
                                                  std::string& error);

/// A listening TCP socket (non-blocking, SO_REUSEADDR, backlog 4096), or -1
/// with `error` set.
int open_listener(const std::string& host, uint16_t port, std::string& error);

/// What this instance registers as `uri` in paybus_instances: its cluster
/// address (cluster.listen, HOST:PORT) with peers, its public URL alone.
std::string registry_uri(const settings& config);

/// The database URL with any password masked, for logs.
std::string redact_url(const std::string& url);

}  // namespace paybus
