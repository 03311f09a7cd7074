#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "messages/interfaces.hpp"

namespace paybus {

/// Who serves which instance number: this process (its own number), or a
/// peer reached through CAF's middleman while it is up. Read by the ingress
/// and the admin actor for every request about another instance's payment;
/// changed only by the cluster actor. Thread-safe.
class cluster_directory {
public:
  explicit cluster_directory(int32_t self);

  int32_t self() const {
    return self_;
  }

  /// Whether this process serves `instance` itself.
  bool serves(int32_t instance) const;

  /// The peer that serves `instance` while it is up; a null handle while it
  /// is down or unknown: the request gets owner_unavailable, never a guess.
  cluster_actor owner(int32_t instance) const;

  void peer_up(int32_t instance, const std::string& address, cluster_actor handle);
  void peer_down(int32_t instance);

  struct member {
    int32_t instance = 0;
    std::string address;
    bool up = false;
  };
  /// Every peer seen since start, by instance number.
  std::vector<member> members() const;

private:
  struct peer {
    std::string address;
    cluster_actor handle;
  };
  const int32_t self_;
  mutable std::mutex mutex_;
  std::map<int32_t, peer> peers_;
};

} // namespace paybus
