#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "messages/interfaces.hpp"

namespace paybus {

class local_store;

/// A dead instance's store opened beside this one's (cluster adopt), and
/// the actors that serve it.
struct adopted_store {
  int32_t instance = 0;
  std::string store_dir;
  reader_actor reader;
  store_actor writer;
  local_store* store = nullptr;  // idempotency look-ups, from any thread
};

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

  /// Whether this process serves `instance` itself (its own, or adopted).
  bool serves(int32_t instance) const;

  /// The adopted store of `instance`, if this process adopted it.
  std::optional<adopted_store> adopted(int32_t instance) const;
  std::vector<adopted_store> adopted_all() const;
  /// The adopted store that holds `pay_id` (its instance number's), if any.
  std::optional<adopted_store> adopted_for(const std::string& pay_id) const;
  void adopt(adopted_store store);

  /// The order an adopted store holds for (merchant, order no): a slot
  /// adopted with its store keeps the idempotency of the orders made there.
  /// Reads RocksDB on the calling thread; `failed` if a store cannot be read.
  std::optional<payment_record> find_adopted(const std::string& merchant_id,
                                             const std::string& merchant_order_no,
                                             bool& failed) const;

  /// The peer that serves `instance` while it is up; a null handle while it
  /// is down or unknown: the request gets owner_unavailable, never a guess.
  cluster_actor owner(int32_t instance) const;

  /// `instance` is served by the peer at `address` (its own number, or one
  /// it adopted).
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
  std::map<int32_t, adopted_store> adopted_;
};

}  // namespace paybus
