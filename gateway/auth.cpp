#include "gateway/auth.hpp"

#include <cstring>

namespace paybus {

std::string canonical_string(std::string_view method, std::string_view target,
                             std::string_view timestamp, std::string_view nonce,
                             std::string_view body) {
  std::string text;
  text.reserve(method.size() + target.size() + timestamp.size() + nonce.size()
               + 68);
  text.append(method);
  text.push_back('\n');
  text.append(target);
  text.push_back('\n');
  text.append(timestamp);
  text.push_back('\n');
  text.append(nonce);
  text.push_back('\n');
  text.append(crypto::sha256_hex(body));
  return text;
}

bool valid_nonce(std::string_view nonce) {
  if (nonce.size() < 16 || nonce.size() > 64)
    return false;
  for (char c : nonce)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
          || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return false;
  return true;
}

bool parse_timestamp(std::string_view text, int64_t& seconds) {
  if (text.empty() || text.size() > 12)
    return false;
  int64_t value = 0;
  for (char c : text) {
    if (c < '0' || c > '9')
      return false;
    value = value * 10 + (c - '0');
  }
  seconds = value;
  return true;
}

bool parse_signature_header(std::string_view header, std::string_view& scheme,
                            std::string_view& value) {
  auto equals = header.find('=');
  if (equals == std::string_view::npos || equals == 0
      || equals + 1 >= header.size())
    return false;
  scheme = header.substr(0, equals);
  value = header.substr(equals + 1);
  return scheme == "hmac-sha256" || scheme == "rsa-sha256";
}

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

auth_failure authenticate(
  const std::unordered_map<std::string, merchant_credentials>& merchants,
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
      || !parse_timestamp(headers.timestamp, timestamp)
      || !valid_nonce(headers.nonce)
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
  auto canonical = canonical_string(method, target, headers.timestamp,
                                    headers.nonce, body);
  bool valid = credentials.rsa
                 ? crypto::rsa_sha256_verify_base64(credentials.public_key.get(),
                                                    canonical, signature)
                 : crypto::constant_time_equal(
                     crypto::hmac_sha256_hex(credentials.secret, canonical),
                     signature);
  if (!valid)
    return auth_failure::unauthenticated;
  if (nonce_seen(credentials.id, headers.nonce))
    return auth_failure::replayed_request;
  *merchant = &credentials;
  return auth_failure::none;
}

signature_headers sign_rsa(EVP_PKEY* key, std::string_view method,
                           std::string_view target, std::string_view body,
                           int64_t now_ms) {
  signature_headers out;
  out.timestamp = std::to_string(now_ms / 1000);
  out.nonce = crypto::random_token(24);
  out.signature = "rsa-sha256="
                  + crypto::rsa_sha256_sign_base64(
                    key, canonical_string(method, target, out.timestamp, out.nonce, body));
  return out;
}

signature_headers sign_hmac(std::string_view secret, std::string_view method,
                            std::string_view target, std::string_view body,
                            int64_t now_ms) {
  signature_headers out;
  out.timestamp = std::to_string(now_ms / 1000);
  out.nonce = crypto::random_token(24);
  out.signature = "hmac-sha256="
                  + crypto::hmac_sha256_hex(
                    secret, canonical_string(method, target, out.timestamp, out.nonce, body));
  return out;
}

bool verify_rsa_message(EVP_PKEY* key, std::string_view method,
                        std::string_view target, std::string_view timestamp,
                        std::string_view nonce, std::string_view signature,
                        std::string_view body, int64_t now_ms,
                        int64_t window_seconds) {
  int64_t seconds = 0;
  std::string_view scheme;
  std::string_view value;
  if (!parse_timestamp(timestamp, seconds) || !valid_nonce(nonce)
      || !parse_signature_header(signature, scheme, value) || scheme != "rsa-sha256")
    return false;
  int64_t skew = seconds - now_ms / 1000;
  if (skew > window_seconds || skew < -window_seconds)
    return false;
  return crypto::rsa_sha256_verify_base64(
    key, canonical_string(method, target, timestamp, nonce, body), value);
}

} // namespace paybus
