#pragma once

// Who signed an admin command: a certificate that chains to the admin CA,
// and a signature by its key over the command. CAF's TLS layer verifies the
// console's certificate but does not tell the actors whose it was; the
// console therefore signs each command with the key of the certificate it
// presented, and the bus verifies both, so that the audit log names the
// certificate's owner and no one who holds another certificate of the CA.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/crypto.hpp"

namespace paybus::crypto {

/// The text an admin command's signature covers.
std::string admin_signed_text(int64_t at_ms, const std::vector<std::string>& words);

/// base64 of a SHA-256 signature by `key` (RSA PKCS#1 v1.5 or ECDSA, as the
/// key is); empty on failure.
std::string sign_sha256_base64(EVP_PKEY* key, std::string_view data);

/// The first certificate of a PEM file, as PEM text, and its subject
/// (RFC 2253: "CN=alice,O=ops"). False with `error` if there is none.
bool read_certificate(const std::string& path, std::string& pem, std::string& subject,
                      std::string& error);

/// The private key of a PEM file, of any type OpenSSL reads (RSA, EC, ...).
pkey_ptr read_private_key(const std::string& path, std::string& error);

/// Verifies certificates against a CA file and signatures by their keys.
class certificate_verifier {
public:
  ~certificate_verifier();
  /// Loads the CA certificates of `cafile`; null with `error` if it cannot.
  static std::unique_ptr<certificate_verifier> load(const std::string& cafile, std::string& error);
  /// True, with the certificate's subject, if `certificate_pem` chains to the
  /// CA and `signature_base64` is its key's SHA-256 signature of `data`.
  bool verify(std::string_view certificate_pem, std::string_view data,
              std::string_view signature_base64, std::string& subject, std::string& error) const;

private:
  certificate_verifier() = default;
  struct x509_store;
  x509_store* store_ = nullptr;
};

}  // namespace paybus::crypto
