#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "config/settings.hpp"

namespace paybus {

class local_store;

/// A stable fingerprint of this instance: hex SHA-256 of host name and the
/// absolute data directory, 32 characters.
std::string instance_fingerprint(const std::string& data_dir);

/// Finds this instance's number: remembered in the store, else registered in
/// paybus_instances (and then remembered), else the configured
/// node.instance_id. Returns nullopt with one line in `error` if none works.
std::optional<int32_t> resolve_instance_id(local_store& store,
                                           const settings& config,
                                           std::string& error);

/// A listening TCP socket (non-blocking, SO_REUSEADDR, backlog 4096), or -1
/// with `error` set.
int open_listener(const std::string& host, uint16_t port, std::string& error);

/// The database URL with any password masked, for logs.
std::string redact_url(const std::string& url);

} // namespace paybus
