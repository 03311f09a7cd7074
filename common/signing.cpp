#include "common/signing.hpp"

#include "common/crypto.hpp"

#include <strings.h>

#include <cstring>

namespace paybus {

std::string canonical_string(std::string_view method, std::string_view target,
                             std::string_view timestamp, std::string_view nonce,
                             std::string_view body) {
  return canonical_string_hashed(method, target, timestamp, nonce, crypto::sha256_hex(body));
}

std::string canonical_string_hashed(std::string_view method, std::string_view target,
                                    std::string_view timestamp, std::string_view nonce,
                                    std::string_view body_sha256_hex) {
  std::string text;
  text.reserve(method.size() + target.size() + timestamp.size() + nonce.size() + 68);
  text.append(method);
  text.push_back('\n');
  text.append(target);
  text.push_back('\n');
  text.append(timestamp);
  text.push_back('\n');
  text.append(nonce);
  text.push_back('\n');
  text.append(body_sha256_hex);
  return text;
}

bool valid_nonce(std::string_view nonce) {
  if (nonce.size() < 16 || nonce.size() > 64)
    return false;
  for (char c : nonce)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
          || c == '-'))
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
  if (equals == std::string_view::npos || equals == 0 || equals + 1 >= header.size())
    return false;
  scheme = header.substr(0, equals);
  value = header.substr(equals + 1);
  return scheme == "hmac-sha256" || scheme == "rsa-sha256";
}

namespace {

/// Fresh timestamp and nonce, and the canonical string they make with the message.
signature_headers fresh_headers(std::string_view method, std::string_view target,
                                std::string_view body, int64_t now_ms, std::string& canonical) {
  signature_headers out;
  out.timestamp = std::to_string(now_ms / 1000);
  out.nonce = crypto::random_token(24);
  canonical = canonical_string(method, target, out.timestamp, out.nonce, body);
  return out;
}

}  // namespace

signature_headers sign_rsa(EVP_PKEY* key, std::string_view method, std::string_view target,
                           std::string_view body, int64_t now_ms) {
  std::string canonical;
  auto out = fresh_headers(method, target, body, now_ms, canonical);
  out.signature = "rsa-sha256=" + crypto::rsa_sha256_sign_base64(key, canonical);
  return out;
}

signature_headers sign_hmac(std::string_view secret, std::string_view method,
                            std::string_view target, std::string_view body, int64_t now_ms) {
  std::string canonical;
  auto out = fresh_headers(method, target, body, now_ms, canonical);
  out.signature = "hmac-sha256=" + crypto::hmac_sha256_hex(secret, canonical);
  return out;
}

bool verify_rsa_message(EVP_PKEY* key, std::string_view method, std::string_view target,
                        std::string_view timestamp, std::string_view nonce,
                        std::string_view signature, std::string_view body, int64_t now_ms,
                        int64_t window_seconds) {
  return verify_rsa_message_hashed(key, method, target, timestamp, nonce, signature,
                                   crypto::sha256_hex(body), now_ms, window_seconds);
}

bool verify_rsa_message_hashed(EVP_PKEY* key, std::string_view method, std::string_view target,
                               std::string_view timestamp, std::string_view nonce,
                               std::string_view signature, std::string_view body_sha256_hex,
                               int64_t now_ms, int64_t window_seconds) {
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
    key, canonical_string_hashed(method, target, timestamp, nonce, body_sha256_hex), value);
}

void take_signature_header(std::string_view line, received_signature& into) {
  auto colon = line.find(':');
  if (colon == std::string_view::npos)
    return;
  auto name = line.substr(0, colon);
  auto value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
    value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' '))
    value.remove_suffix(1);
  auto is = [&](const char* header) {
    return name.size() == std::strlen(header) && strncasecmp(name.data(), header, name.size()) == 0;
  };
  if (is("X-Paybus-Timestamp"))
    into.timestamp = value;
  else if (is("X-Paybus-Nonce"))
    into.nonce = value;
  else if (is("X-Paybus-Signature"))
    into.signature = value;
  else if (is("X-Paybus-Channel"))
    into.channel = value;
}

}  // namespace paybus
