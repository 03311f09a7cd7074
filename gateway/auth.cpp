#include "gateway/auth.hpp"

#include <cstring>

namespace paybus {

const char* to_code(auth_failure failure) {
  switch (failure) {
    case auth_failure::none:
      return "ok";
    case auth_failure::unauthenticated:
      return "unauthenticated";
    case auth_failure::stale_timestamp:
      return "stale_timestamp";
    case auth_failure::replayed_request:
      return "replayed_request";
  }
  return "unauthenticated";
}

auth_failure authenticate(const std::unordered_map<std::string, merchant_credentials>& merchants,
                          const auth_headers& headers, std::string_view method,
                          std::string_view target, std::string_view body, int64_t now_ms,
                          int64_t window_seconds,
                          const std::function<bool(std::string_view, std::string_view)>& nonce_seen,
                          const merchant_credentials** merchant) {
  *merchant = nullptr;
  int64_t timestamp = 0;
  std::string_view scheme;
  std::string_view signature;
  if (headers.duplicated || headers.principal.empty()
      || !parse_timestamp(headers.timestamp, timestamp) || !valid_nonce(headers.nonce)
      || !parse_signature_header(headers.signature, scheme, signature))
    return auth_failure::unauthenticated;
  auto found = merchants.find(std::string{headers.principal});
  if (found == merchants.end())
    return auth_failure::unauthenticated;
  const auto& credentials = found->second;
  if (scheme != (credentials.rsa ? "rsa-sha256" : "hmac-sha256"))
    return auth_failure::unauthenticated;
  int64_t skew = timestamp - now_ms / 1000;
  if (skew > window_seconds || skew < -window_seconds)
    return auth_failure::stale_timestamp;
  auto canonical = canonical_string(method, target, headers.timestamp, headers.nonce, body);
  bool valid
    = credentials.rsa
        ? crypto::rsa_sha256_verify_base64(credentials.public_key.get(), canonical, signature)
        : crypto::constant_time_equal(crypto::hmac_sha256_hex(credentials.secret, canonical),
                                      signature);
  if (!valid)
    return auth_failure::unauthenticated;
  if (nonce_seen(credentials.id, headers.nonce))
    return auth_failure::replayed_request;
  *merchant = &credentials;
  return auth_failure::none;
}

}  // namespace paybus
