#include "common/crypto.hpp"

#include <new>

#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

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
    error = "RSA key has " + std::to_string(EVP_PKEY_get_bits(key)) + " bits, at least "
            + std::to_string(minimum_rsa_bits) + " required";
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

/// SHA-256 and HMAC as OpenSSL 3 fetches them, once a process: the
/// one-shot calls (SHA256(), HMAC()) fetch the algorithm from the provider
/// on every call, under a lock, which cost more than the hashing of a
/// merchant's request.
const EVP_MD* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

EVP_MAC* hmac_mac() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}

/// A thread's digest context, reused for every hash.
struct digest_context {
  digest_context() : ctx(EVP_MD_CTX_new()) {
    if (ctx == nullptr)
      throw std::bad_alloc();
  }
  ~digest_context() {
    EVP_MD_CTX_free(ctx);
  }
  EVP_MD_CTX* ctx;
};

/// A thread's HMAC contexts, one a key: a context keeps its key's inner and
/// outer pads, and EVP_MAC_init with no key starts it again with them.
/// The keys are merchants' secrets and the like, a handful; a thread given
/// more than `capacity` starts over.
class hmac_contexts {
public:
  ~hmac_contexts() {
    clear();
  }

  EVP_MAC_CTX* get(std::string_view key) {
    auto found = contexts_.find(key);  // no copy of the key to look it up
    if (found != contexts_.end())
      return EVP_MAC_init(found->second, nullptr, 0, nullptr) == 1 ? found->second : nullptr;
    if (contexts_.size() >= capacity)
      clear();
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(hmac_mac());
    if (ctx == nullptr)
      return nullptr;
    char digest_name[] = "SHA256";
    OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
      OSSL_PARAM_construct_end(),
    };
    static const unsigned char no_key = 0;  // an empty key is a key, not none
    auto* bytes = key.empty() ? &no_key : reinterpret_cast<const unsigned char*>(key.data());
    if (EVP_MAC_init(ctx, bytes, key.size(), params) != 1) {
      EVP_MAC_CTX_free(ctx);
      return nullptr;
    }
    contexts_.emplace(std::string{key}, ctx);
    return ctx;
  }

private:
  static constexpr size_t capacity = 64;

  void clear() {
    for (auto& [key, ctx] : contexts_) {
      EVP_MAC_CTX_free(ctx);
      OPENSSL_cleanse(const_cast<char*>(key.data()), key.size());
    }
    contexts_.clear();
  }

  std::map<std::string, EVP_MAC_CTX*, std::less<>> contexts_;  // at most 64: six comparisons
};

void sha256(std::string_view data, unsigned char (&digest)[SHA256_DIGEST_LENGTH]) {
  thread_local digest_context context;
  unsigned int size = 0;
  if (EVP_DigestInit_ex2(context.ctx, sha256_md(), nullptr) != 1
      || EVP_DigestUpdate(context.ctx, data.data(), data.size()) != 1
      || EVP_DigestFinal_ex(context.ctx, digest, &size) != 1)
    SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
}

}  // namespace

std::string sha256_hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  sha256(data, digest);
  return to_hex(digest, sizeof(digest));
}

sha256_stream::sha256_stream() : context_(EVP_MD_CTX_new()) {
  if (context_ == nullptr || EVP_DigestInit_ex(context_, EVP_sha256(), nullptr) != 1)
    throw std::bad_alloc();
}

sha256_stream::~sha256_stream() {
  EVP_MD_CTX_free(context_);
}

void sha256_stream::update(std::string_view data) {
  EVP_DigestUpdate(context_, data.data(), data.size());
}

std::string sha256_stream::hex() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_DigestFinal_ex(context_, digest, &size);
  return to_hex(digest, size);
}

std::string hmac_sha256_hex(std::string_view key, std::string_view data) {
  thread_local hmac_contexts contexts;
  unsigned char digest[EVP_MAX_MD_SIZE];
  size_t size = 0;
  EVP_MAC_CTX* ctx = contexts.get(key);
  if (ctx == nullptr
      || EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) != 1
      || EVP_MAC_final(ctx, digest, &size, sizeof(digest)) != 1)
    return {};  // only when OpenSSL cannot allocate: equal to no signature
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
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '='))
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

size_t count_certificates(const std::string& path, std::string& error) {
  auto text = read_file(path, error);
  if (text.empty()) {
    if (error.empty())
      error = path + " is empty";
    return 0;
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> bio{
    BIO_new_mem_buf(text.data(), static_cast<int>(text.size())), BIO_free};
  size_t count = 0;
  ERR_clear_error();
  while (X509* certificate = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_free(certificate);
    ++count;
  }
  // The loop ends at the end of the text (PEM_R_NO_START_LINE; other PEM
  // blocks are passed over, as OpenSSL passes them over in a CA file) or at
  // a certificate that does not parse, which is refused.
  unsigned long last = ERR_peek_last_error();
  bool clean_end = ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE;
  ERR_clear_error();
  if (!clean_end) {
    error = path + ": a PEM certificate in it does not parse";
    return 0;
  }
  if (count == 0)
    error = path + ": no PEM certificate in it";
  return count;
}

namespace {

/// A thread's ready-made contexts for one key. EVP_DigestSignInit and
/// EVP_DigestVerifyInit look the algorithms up in OpenSSL's provider tables
/// on every call, which cost about as much as an RSA verification itself
/// (build/benchmarks/paybus-bench-signing); an initialised EVP_PKEY_CTX may
/// sign or verify any number of digests with the same parameters.
struct key_contexts {
  EVP_PKEY* key = nullptr;  // a reference held: its address names no other key
  EVP_PKEY_CTX* sign = nullptr;
  EVP_PKEY_CTX* verify = nullptr;
};

class context_cache {
public:
  context_cache() = default;
  context_cache(const context_cache&) = delete;
  context_cache& operator=(const context_cache&) = delete;
  ~context_cache() {
    for (auto& entry : entries_)
      release(entry);
  }

  /// The context of `key` for signing (`for_signing`) or verifying, set up
  /// for RSASSA-PKCS1-v1_5 with SHA-256; null if OpenSSL refuses.
  EVP_PKEY_CTX* get(EVP_PKEY* key, bool for_signing) {
    auto found = std::find_if(entries_.begin(), entries_.end(),
                              [&](const key_contexts& entry) { return entry.key == key; });
    if (found == entries_.end()) {
      if (entries_.size() >= capacity) {  // a thread that met many keys: forget the oldest
        release(entries_.front());
        entries_.erase(entries_.begin());
      }
      EVP_PKEY_up_ref(key);
      entries_.push_back(key_contexts{key});
      found = std::prev(entries_.end());
    }
    auto& slot = for_signing ? found->sign : found->verify;
    if (slot == nullptr)
      slot = make(key, for_signing);
    return slot;
  }

private:
  static constexpr size_t capacity = 16;

  /// A signing context works on this thread's own copy of the key: OpenSSL
  /// gives an RSA key's blinding to the first thread that signs with it and
  /// makes every other thread share one under a lock, about a tenth slower
  /// a signature (build/benchmarks/paybus-bench-signing, sitting 7).
  static EVP_PKEY_CTX* make(EVP_PKEY* key, bool for_signing) {
    EVP_PKEY* own = for_signing ? EVP_PKEY_dup(key) : nullptr;
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(own != nullptr ? own : key, nullptr);
    EVP_PKEY_free(own);  // the context holds its own reference
    if (ctx != nullptr && (for_signing ? EVP_PKEY_sign_init(ctx) : EVP_PKEY_verify_init(ctx)) == 1
        && EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1
        && EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1)
      return ctx;
    EVP_PKEY_CTX_free(ctx);
    return nullptr;
  }

  static void release(key_contexts& entry) {
    EVP_PKEY_CTX_free(entry.sign);
    EVP_PKEY_CTX_free(entry.verify);
    EVP_PKEY_free(entry.key);
  }

  std::vector<key_contexts> entries_;
};

thread_local context_cache contexts;

std::atomic<uint64_t> private_key_operations{0};
std::atomic<uint64_t> private_key_cpu_ns{0};

/// CPU time of the calling thread: about 0.23 µs a read against a
/// signature's 300 or more (paybus-bench-signing's thread_cpu_clock).
uint64_t thread_cpu_ns() {
  timespec now{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
  return static_cast<uint64_t>(now.tv_sec) * 1'000'000'000u + static_cast<uint64_t>(now.tv_nsec);
}

}  // namespace

std::string rsa_sha256_sign_base64(EVP_PKEY* key, std::string_view data) {
  EVP_PKEY_CTX* ctx = key == nullptr ? nullptr : contexts.get(key, true);
  if (ctx == nullptr)
    return {};
  unsigned char digest[SHA256_DIGEST_LENGTH];
  sha256(data, digest);
  unsigned char signature[1024];  // up to RSA-8192
  size_t size = sizeof(signature);
  if (static_cast<size_t>(EVP_PKEY_get_size(key)) > size)
    return {};
  auto started = thread_cpu_ns();
  bool signed_ok = EVP_PKEY_sign(ctx, signature, &size, digest, sizeof(digest)) == 1;
  private_key_cpu_ns.fetch_add(thread_cpu_ns() - started, std::memory_order_relaxed);
  if (!signed_ok)
    return {};
  private_key_operations.fetch_add(1, std::memory_order_relaxed);
  return base64_encode({reinterpret_cast<const char*>(signature), size});
}

private_key_usage private_key_usage_so_far() {
  return {private_key_operations.load(std::memory_order_relaxed),
          private_key_cpu_ns.load(std::memory_order_relaxed)};
}

bool rsa_sha256_verify_base64(EVP_PKEY* key, std::string_view data,
                              std::string_view signature_base64) {
  std::string signature;
  if (key == nullptr || !base64_decode(signature_base64, signature))
    return false;
  EVP_PKEY_CTX* ctx = contexts.get(key, false);
  if (ctx == nullptr)
    return false;
  unsigned char digest[SHA256_DIGEST_LENGTH];
  sha256(data, digest);
  return EVP_PKEY_verify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                         signature.size(), digest, sizeof(digest))
         == 1;
}

std::string random_token(size_t length) {
  static constexpr char alphabet[]
    = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::string bytes(length, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(bytes.data()), static_cast<int>(length));
  for (auto& c : bytes)
    c = alphabet[static_cast<unsigned char>(c) % 62];
  return bytes;
}

}  // namespace paybus::crypto
