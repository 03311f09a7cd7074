#include "programs/startup.hpp"

#include <cerrno>
#include <climits>
#include <cstring>
#include <netdb.h>
#include <sys/socket.h>
#include <cstdlib>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/crypto.hpp"
#include "storage/local/local_store.hpp"
#include "storage/database/pg_database.hpp"

namespace paybus {

std::string instance_fingerprint(const std::string& data_dir) {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  char absolute[PATH_MAX] = {0};
  std::string dir = realpath(data_dir.c_str(), absolute) != nullptr ? absolute : data_dir;
  return crypto::sha256_hex(std::string{host} + ":" + dir).substr(0, 32);
}

std::optional<int32_t> resolve_instance_id(local_store& store,
                                           const settings& config,
                                           std::string& error) {
  std::optional<std::string> remembered;
  auto status = store.get_meta("instance_id", remembered);
  if (!status.ok()) {
    error = "cannot read the instance number from the local store: " + status.ToString();
    return std::nullopt;
  }
  if (remembered) {
    auto id = static_cast<int32_t>(std::strtol(remembered->c_str(), nullptr, 10));
    if (config.instance_id && *config.instance_id != id)
      spdlog::warn("node.instance_id = {} ignored: this store belongs to instance {}",
                   *config.instance_id, id);
    return id;
  }
  auto fingerprint = instance_fingerprint(config.data_dir);
  pg_database database{{config.database_url, config.database_connect_timeout_ms,
                        config.database_statement_timeout_ms}};
  std::string registry_error;
  auto registered = database.register_instance(fingerprint, config.public_url,
                                               registry_error);
  int32_t id = 0;
  if (registered) {
    id = *registered;
    spdlog::info("registered as instance {} (fingerprint {})", id, fingerprint);
  } else if (config.instance_id) {
    id = *config.instance_id;
    spdlog::warn("instance registry unreachable ({}); using node.instance_id = {}",
                 registry_error, id);
  } else {
    error = "first start needs an instance number, but the database is "
            "unreachable (" + registry_error + "); start the database or set "
            "node.instance_id";
    return std::nullopt;
  }
  if (id < 1 || id > 99999) {
    error = "instance number " + std::to_string(id) + " is outside 1..99999";
    return std::nullopt;
  }
  status = store.put_meta("instance_id", std::to_string(id));
  if (status.ok())
    status = store.put_meta("fingerprint", fingerprint);
  if (!status.ok()) {
    error = "cannot remember the instance number: " + status.ToString();
    return std::nullopt;
  }
  return id;
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

} // namespace paybus

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

} // namespace paybus
