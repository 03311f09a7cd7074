#include "common/nonce_cache.hpp"

#include <algorithm>
#include <array>
#include <functional>
#include <string>

namespace paybus {

uint64_t nonce_cache::key(std::string_view principal, std::string_view nonce) {
  // The hash of "principal\0nonce"; joined on the stack when it fits (the
  // ids and nonces of at most 64 characters always do), so no allocation.
  std::array<char, 256> buffer;
  size_t size = principal.size() + 1 + nonce.size();
  std::string joined;
  char* out = buffer.data();
  if (size > buffer.size()) {
    joined.resize(size);
    out = joined.data();
  }
  auto* end = std::copy(principal.begin(), principal.end(), out);
  *end++ = '\0';
  std::copy(nonce.begin(), nonce.end(), end);
  return std::hash<std::string_view>{}(std::string_view{out, size});
}

bool nonce_cache::seen(std::string_view principal, std::string_view nonce) const {
  return hashes_.count(key(principal, nonce)) > 0;
}

void nonce_cache::remember(std::string_view principal, std::string_view nonce, int64_t seen_at_ms) {
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

}  // namespace paybus
