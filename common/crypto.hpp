#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <openssl/evp.h>

namespace paybus::crypto {

/// Lowercase hex of SHA-256(data).
std::string sha256_hex(std::string_view data);

/// SHA-256 of data that comes in pieces (a body streamed to a file).
class sha256_stream {
public:
  sha256_stream();
  ~sha256_stream();
  sha256_stream(const sha256_stream&) = delete;
  sha256_stream& operator=(const sha256_stream&) = delete;
  void update(std::string_view data);
  /// The digest in lower-case hex; the stream is done with.
  std::string hex();

private:
  EVP_MD_CTX* context_;
};

/// Lowercase hex of HMAC-SHA256(key, data).
std::string hmac_sha256_hex(std::string_view key, std::string_view data);

/// Compares two strings in time independent of where they differ.
bool constant_time_equal(std::string_view a, std::string_view b);

std::string base64_encode(std::string_view bytes);
/// Returns false on malformed input.
bool base64_decode(std::string_view text, std::string& bytes);

struct pkey_deleter {
  void operator()(EVP_PKEY* key) const {
    EVP_PKEY_free(key);
  }
};
using pkey_ptr = std::shared_ptr<EVP_PKEY>;

/// Minimum RSA modulus size accepted anywhere in paybus.
constexpr int minimum_rsa_bits = 2048;

/// Loads a PEM private key (PKCS#8 or PKCS#1). On failure returns null and
/// sets `error` to one line.
pkey_ptr load_private_key(const std::string& path, std::string& error);

/// Loads a PEM SubjectPublicKeyInfo public key.
pkey_ptr load_public_key(const std::string& path, std::string& error);

/// Same, from PEM text in memory.
pkey_ptr parse_public_key_pem(std::string_view pem, std::string& error);
pkey_ptr parse_private_key_pem(std::string_view pem, std::string& error);

/// How many PEM certificates the file at `path` holds: 0, with `error` set,
/// when it cannot be read, holds none, or holds one that does not parse.
size_t count_certificates(const std::string& path, std::string& error);

/// base64 of RSASSA-PKCS1-v1_5 SHA-256 signature; empty on failure. Any
/// thread may sign with the same key: each keeps a ready context per key,
/// on its own copy of it (crypto.cpp).
std::string rsa_sha256_sign_base64(EVP_PKEY* key, std::string_view data);

/// The private-key operations (signatures) this process has made so far, and
/// the CPU time their threads spent inside them. The channel benchmark
/// (docs/benchmarks.md) sets that time beside the machine's: the share of
/// the machine that went to private-key operations is how near the RSA bound
/// a run came, whatever speed the host ran at meanwhile.
struct private_key_usage {
  uint64_t operations = 0;
  uint64_t cpu_ns = 0;
};
private_key_usage private_key_usage_so_far();

/// Verifies a base64 RSASSA-PKCS1-v1_5 SHA-256 signature.
bool rsa_sha256_verify_base64(EVP_PKEY* key, std::string_view data,
                              std::string_view signature_base64);

/// Cryptographically random bytes rendered as [A-Za-z0-9], `length` long.
std::string random_token(size_t length);

}  // namespace paybus::crypto
