#pragma once

// The signature scheme of API.md sections 3-5, shared by the gateway (which
// verifies merchants and channels) and the channel actors (which sign).

#include <cstdint>
#include <string>
#include <string_view>

#include <openssl/evp.h>

namespace paybus {

/// canonical = METHOD "\n" TARGET "\n" TIMESTAMP "\n" NONCE "\n" hex(sha256(BODY))
std::string canonical_string(std::string_view method, std::string_view target,
                             std::string_view timestamp, std::string_view nonce,
                             std::string_view body);

/// The same, from the body's hash (hex SHA-256): a body too big to hold.
std::string canonical_string_hashed(std::string_view method, std::string_view target,
                                    std::string_view timestamp, std::string_view nonce,
                                    std::string_view body_sha256_hex);

/// 16 to 64 of [A-Za-z0-9_-].
bool valid_nonce(std::string_view nonce);

/// Unix seconds, 1 to 12 digits; false if malformed.
bool parse_timestamp(std::string_view text, int64_t& seconds);

/// Splits "scheme=value"; false if malformed.
bool parse_signature_header(std::string_view header, std::string_view& scheme,
                            std::string_view& value);

/// The four signature headers of API.md sections 3 and 4, as sent.
struct signature_headers {
  std::string timestamp;
  std::string nonce;
  std::string signature;  // "rsa-sha256=..." or "hmac-sha256=..."
};

/// Signs METHOD/TARGET/body now with an RSA key (fresh timestamp and nonce).
signature_headers sign_rsa(EVP_PKEY* key, std::string_view method, std::string_view target,
                           std::string_view body, int64_t now_ms);

/// Signs with an HMAC secret (merchant webhooks of hmac merchants).
signature_headers sign_hmac(std::string_view secret, std::string_view method,
                            std::string_view target, std::string_view body, int64_t now_ms);

/// Verifies an rsa-sha256 signature of a channel message (request, response
/// or notification): headers well-formed, timestamp within the window,
/// signature valid. Nonces are the caller's business.
bool verify_rsa_message(EVP_PKEY* key, std::string_view method, std::string_view target,
                        std::string_view timestamp, std::string_view nonce,
                        std::string_view signature, std::string_view body, int64_t now_ms,
                        int64_t window_seconds);

/// The same over a body given by its hash (hex SHA-256): a statement,
/// streamed to a file while it was hashed.
bool verify_rsa_message_hashed(EVP_PKEY* key, std::string_view method, std::string_view target,
                               std::string_view timestamp, std::string_view nonce,
                               std::string_view signature, std::string_view body_sha256_hex,
                               int64_t now_ms, int64_t window_seconds);

/// The signature headers of a channel's answer, as received.
struct received_signature {
  std::string channel;  // X-Paybus-Channel
  std::string timestamp;
  std::string nonce;
  std::string signature;
};

/// Takes one raw header line ("Name: value\r\n") if it is one of the four.
void take_signature_header(std::string_view line, received_signature& into);

}  // namespace paybus
