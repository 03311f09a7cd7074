#pragma once

#include <cstdint>
#include <deque>
#include <string_view>
#include <unordered_set>
#include <utility>

namespace paybus {

/// Nonces accepted recently, per principal (a merchant, a channel), in
/// memory, for `retention_ms`. Memory: about 48 bytes a nonce.
class nonce_cache {
public:
  explicit nonce_cache(int64_t retention_ms) : retention_ms_(retention_ms) {
  }

  bool seen(std::string_view principal, std::string_view nonce) const;
  void remember(std::string_view principal, std::string_view nonce, int64_t seen_at_ms);
  void expire(int64_t now_ms);
  size_t size() const {
    return hashes_.size();
  }

private:
  static uint64_t key(std::string_view principal, std::string_view nonce);

  int64_t retention_ms_;
  std::unordered_set<uint64_t> hashes_;
  std::deque<std::pair<int64_t, uint64_t>> by_time_;
};

}  // namespace paybus
