#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/crypto.hpp"
#include "common/nonce_cache.hpp"
#include "common/signing.hpp"

namespace paybus {

/// A merchant as the gateway authenticates it.
struct merchant_credentials {
  std::string id;
  bool rsa = false;
  std::string secret;           // hmac-sha256
  crypto::pkey_ptr public_key;  // rsa-sha256
  std::string notify_url;
};

/// The four authentication headers as received (empty if absent).
struct auth_headers {
  std::string_view principal;  // X-Paybus-Merchant (or X-Paybus-Channel)
  std::string_view timestamp;
  std::string_view nonce;
  std::string_view signature;
  bool duplicated = false;  // any of them sent twice
};

enum class auth_failure {
  none,
  unauthenticated,
  stale_timestamp,
  replayed_request,
};

const char* to_code(auth_failure failure);

/// Checks a request's authentication (API.md section 3) in this order:
/// headers well-formed, merchant known, timestamp within the window,
/// signature valid, nonce new (`nonce_seen(merchant, nonce)`). Remembers
/// nothing: the caller remembers the nonce once it accepts the request.
auth_failure authenticate(const std::unordered_map<std::string, merchant_credentials>& merchants,
                          const auth_headers& headers, std::string_view method,
                          std::string_view target, std::string_view body, int64_t now_ms,
                          int64_t window_seconds,
                          const std::function<bool(std::string_view, std::string_view)>& nonce_seen,
                          const merchant_credentials** merchant);

}  // namespace paybus
