#include "common/nonce_cache.hpp"

#include <string>

namespace paybus {

uint64_t nonce_cache::key(std::string_view principal, std::string_view nonce) {
  std::string joined;
  joined.reserve(principal.size() + 1 + nonce.size());
  joined.append(principal);
  joined.push_back('\0');
  joined.append(nonce);
  return std::hash<std::string>{}(joined);
}

bool nonce_cache::seen(std::string_view principal, std::string_view nonce) const {
  return hashes_.count(key(principal, nonce)) > 0;
}

void nonce_cache::remember(std::string_view principal, std::string_view nonce,
                           int64_t seen_at_ms) {
  auto hash = key(principal, nonce);
  if (hashes_.insert(hash).second)
    by_time_.emplace_back(seen_at_ms, hash);
}

void nonce_cache::expire(int64_t now_ms) {
  while (!by_time_.empty() && by_time_.front().first + retention_ms_ < now_ms) {
    hashes_.erase(by_time_.front().second);
    by_time_.pop_front();
  }
}

} // namespace paybus
