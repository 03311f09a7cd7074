#include "programs/startup.hpp"

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/crypto.hpp"
#include "storage/database/pg_database.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

std::string legacy_instance_fingerprint(const std::string& data_dir) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  char absolute[PATH_MAX] = {0};
  std::string dir = realpath(data_dir.c_str(), absolute) != nullptr ? absolute : data_dir;
  return crypto::sha256_hex(std::string{host} + ":" + dir).substr(0, 32);
}

namespace {

/// The store's fingerprint: kept, or made now (random) and kept before any
/// registry hears of it, so that a crash after registering finds the same.
std::optional<std::string> store_fingerprint(local_store& store, bool numbered,
                                             const settings& config, std::string& error) {
  std::optional<std::string> kept;
  auto status = store.get_meta("fingerprint", kept);
  if (!status.ok()) {
    error = "cannot read the instance fingerprint from the local store: " + status.ToString();
    return std::nullopt;
  }
  if (kept)
    return kept;
  // A store numbered before it kept a fingerprint was registered under the
  // old one; a new store gets a random identity of its own.
  auto fingerprint = numbered ? legacy_instance_fingerprint(config.data_dir)
                              : crypto::random_token(32);
  status = store.put_meta("fingerprint", fingerprint);
  if (!status.ok()) {
    error = "cannot keep the instance fingerprint: " + status.ToString();
    return std::nullopt;
  }
  return fingerprint;
}

}  // namespace

std::optional<instance_identity> resolve_instance(local_store& store, const settings& config,
                                                  std::string& error) {
  std::optional<std::string> remembered;
  auto status = store.get_meta("instance_id", remembered);
  if (!status.ok()) {
    error = "cannot read the instance number from the local store: " + status.ToString();
    return std::nullopt;
  }
  auto fingerprint = store_fingerprint(store, remembered.has_value(), config, error);
  if (!fingerprint)
    return std::nullopt;
  instance_identity identity;
  identity.fingerprint = *fingerprint;
  pg_database database{{config.database_url, config.database_connect_timeout_ms,
                        config.database_statement_timeout_ms}};
  std::string registry_error;
  if (remembered) {
    identity.id = static_cast<int32_t>(std::strtol(remembered->c_str(), nullptr, 10));
    if (config.instance_id && *config.instance_id != identity.id)
      spdlog::warn("node.instance_id = {} ignored: this store belongs to instance {}",
                   *config.instance_id, identity.id);
    // Adopted by a survivor (cluster adopt): that one serves this number,
    // its payments and its slots now; this store must never serve them again.
    if (auto adopter = database.adopter_of(identity.id, registry_error); adopter && *adopter > 0) {
      error = "instance " + std::to_string(identity.id) + " was adopted by instance "
              + std::to_string(*adopter)
              + " (cluster adopt), which serves its payments and "
                "slots now; refusing to start this store again (paybus-replay can still read it)";
      return std::nullopt;
    }
    // The registry must hold the number for this store (a number taken
    // while it was unreachable is entered now).
    auto holder = database.claim_instance(identity.id, identity.fingerprint, registry_uri(config),
                                          registry_error);
    if (!holder) {
      spdlog::warn("instance registry unreachable ({}); instance {} is entered in it once the "
                   "database answers",
                   registry_error, identity.id);
      return identity;
    }
    if (*holder != identity.fingerprint) {
      error = "instance number " + std::to_string(identity.id)
              + " belongs to another instance in paybus_instances ("
              + (holder->empty() ? std::string{"no row, though this store's fingerprint is there"}
                                 : "fingerprint " + *holder)
              + "), not to this store (fingerprint " + identity.fingerprint
              + "): two instances with one number would issue the same pay_ids; refusing to "
                "start";
      return std::nullopt;
    }
    identity.confirmed = true;
    return identity;
  }
  auto registered = database.register_instance(identity.fingerprint, registry_uri(config),
                                               registry_error);
  if (registered) {
    identity.id = *registered;
    identity.confirmed = true;
    spdlog::info("registered as instance {} (fingerprint {})", identity.id, identity.fingerprint);
  } else if (config.instance_id) {
    identity.id = *config.instance_id;
    spdlog::warn("instance registry unreachable ({}); using node.instance_id = {}, entered in "
                 "the registry once the database answers",
                 registry_error, identity.id);
  } else {
    error = "first start needs an instance number, but the database is "
            "unreachable ("
            + registry_error
            + "); start the database or set "
              "node.instance_id";
    return std::nullopt;
  }
  if (identity.id < 1 || identity.id > 99999) {
    error = "instance number " + std::to_string(identity.id) + " is outside 1..99999";
    return std::nullopt;
  }
  status = store.put_meta("instance_id", std::to_string(identity.id));
  if (!status.ok()) {
    error = "cannot remember the instance number: " + status.ToString();
    return std::nullopt;
  }
  return identity;
}

std::string redact_url(const std::string& url) {
  auto scheme = url.find("://");
  auto at = url.find('@');
  if (scheme == std::string::npos || at == std::string::npos || at < scheme)
    return url;
  auto colon = url.find(':', scheme + 3);
  if (colon == std::string::npos || colon > at)
    return url;
  return url.substr(0, colon + 1) + "***" + url.substr(at);
}

}  // namespace paybus

namespace paybus {

int open_listener(const std::string& host, uint16_t port, std::string& error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  auto service = std::to_string(port);
  int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), service.c_str(), &hints, &found);
  if (rc != 0) {
    error = std::string{"cannot resolve "} + host + ": " + gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (auto* address = found; address != nullptr; address = address->ai_next) {
    fd = socket(address->ai_family, address->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                address->ai_protocol);
    if (fd < 0)
      continue;
    int one = 1;
    // SO_REUSEADDR only: a restart binds past TIME_WAIT, but a second bus
    // on the same port is refused (no SO_REUSEPORT).
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, address->ai_addr, address->ai_addrlen) == 0 && listen(fd, 4096) == 0)
      break;
    error = std::strerror(errno);
    close(fd);
    fd = -1;
  }
  freeaddrinfo(found);
  return fd;
}

std::string registry_uri(const settings& config) {
  return config.cluster_listen.empty() ? config.public_url : config.cluster_listen;
}

}  // namespace paybus
