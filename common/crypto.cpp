#include "common/crypto.hpp"

#include <cstdio>
#include <cstring>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

namespace paybus::crypto {

namespace {

std::string to_hex(const unsigned char* bytes, size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (size_t i = 0; i < size; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 0x0f];
  }
  return out;
}

pkey_ptr wrap(EVP_PKEY* key) {
  return pkey_ptr{key, pkey_deleter{}};
}

bool check_rsa_size(EVP_PKEY* key, std::string& error) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
    error = "not an RSA key";
    return false;
  }
  if (EVP_PKEY_get_bits(key) < minimum_rsa_bits) {
    error = "RSA key has " + std::to_string(EVP_PKEY_get_bits(key))
            + " bits, at least " + std::to_string(minimum_rsa_bits)
            + " required";
    return false;
  }
  return true;
}

std::string read_file(const std::string& path, std::string& error) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) {
    error = "cannot open " + path + ": " + std::strerror(errno);
    return {};
  }
  std::string text;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file)) > 0 && text.size() < (1u << 20))
    text.append(buffer, n);
  std::fclose(file);
  return text;
}

} // namespace

std::string sha256_hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         digest);
  return to_hex(digest, sizeof(digest));
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(),
       digest, &size);
  return to_hex(digest, size);
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size())
    return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

std::string base64_encode(std::string_view bytes) {
  std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<int>(bytes.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

bool base64_decode(std::string_view text, std::string& bytes) {
  if (text.empty() || text.size() % 4 != 0 || text.size() > 8192)
    return false;
  for (char c : text)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/'
          || c == '='))
      return false;
  bytes.assign(3 * text.size() / 4, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(bytes.data()),
                          reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0)
    return false;
  size_t padding = 0;
  if (text.back() == '=')
    ++padding;
  if (text.size() >= 2 && text[text.size() - 2] == '=')
    ++padding;
  bytes.resize(static_cast<size_t>(n) - padding);
  return true;
}

pkey_ptr parse_private_key_pem(std::string_view pem, std::string& error) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    error = "not a PEM private key (PKCS#8 or PKCS#1)";
    return nullptr;
  }
  auto result = wrap(key);
  if (!check_rsa_size(key, error))
    return nullptr;
  return result;
}

pkey_ptr parse_public_key_pem(std::string_view pem, std::string& error) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) {
    error = "not a PEM public key (SubjectPublicKeyInfo)";
    return nullptr;
  }
  auto result = wrap(key);
  if (!check_rsa_size(key, error))
    return nullptr;
  return result;
}

pkey_ptr load_private_key(const std::string& path, std::string& error) {
  auto text = read_file(path, error);
  if (text.empty()) {
    if (error.empty())
      error = path + " is empty";
    return nullptr;
  }
  auto key = parse_private_key_pem(text, error);
  if (!key)
    error = path + ": " + error;
  return key;
}

pkey_ptr load_public_key(const std::string& path, std::string& error) {
  auto text = read_file(path, error);
  if (text.empty()) {
    if (error.empty())
      error = path + " is empty";
    return nullptr;
  }
  auto key = parse_public_key_pem(text, error);
  if (!key)
    error = path + ": " + error;
  return key;
}

pkey_ptr copy_for_thread(const pkey_ptr& key) {
  EVP_PKEY* copy = key ? EVP_PKEY_dup(key.get()) : nullptr;
  return copy == nullptr ? key : wrap(copy);
}

std::string rsa_sha256_sign_base64(EVP_PKEY* key, std::string_view data) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::string signature;
  size_t size = 0;
  if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1
      && EVP_DigestSign(ctx, nullptr, &size,
                        reinterpret_cast<const unsigned char*>(data.data()),
                        data.size())
           == 1) {
    signature.assign(size, '\0');
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()),
                       &size,
                       reinterpret_cast<const unsigned char*>(data.data()),
                       data.size())
        == 1)
      signature.resize(size);
    else
      signature.clear();
  }
  EVP_MD_CTX_free(ctx);
  return signature.empty() ? std::string{} : base64_encode(signature);
}

bool rsa_sha256_verify_base64(EVP_PKEY* key, std::string_view data,
                              std::string_view signature_base64) {
  std::string signature;
  if (key == nullptr || !base64_decode(signature_base64, signature))
    return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok = EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1
            && EVP_DigestVerify(
                 ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                 signature.size(),
                 reinterpret_cast<const unsigned char*>(data.data()),
                 data.size())
                 == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

std::string random_token(size_t length) {
  static constexpr char alphabet[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string bytes(length, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()),
             static_cast<int>(length));
  for (auto& c : bytes)
    c = alphabet[static_cast<unsigned char>(c) % 62];
  return bytes;
}

} // namespace paybus::crypto
