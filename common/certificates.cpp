#include "common/certificates.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

namespace paybus::crypto {

namespace {

std::string subject_of(X509* certificate) {
  std::string subject;
  BIO* out = BIO_new(BIO_s_mem());
  if (out == nullptr)
    return subject;
  X509_NAME_print_ex(out, X509_get_subject_name(certificate), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  auto size = BIO_get_mem_data(out, &data);
  if (size > 0)
    subject.assign(data, static_cast<size_t>(size));
  BIO_free(out);
  return subject;
}

std::string openssl_error() {
  auto code = ERR_get_error();
  ERR_clear_error();
  if (code == 0)
    return "unknown error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

}  // namespace

struct certificate_verifier::x509_store {
  X509_STORE* store = nullptr;
};

std::string admin_signed_text(int64_t at_ms, const std::vector<std::string>& words) {
  std::string text = "paybus-admin\n" + std::to_string(at_ms);
  for (const auto& word : words)
    text += "\n" + word;
  return text;
}

std::string sign_sha256_base64(EVP_PKEY* key, std::string_view data) {
  if (key == nullptr)
    return {};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::string signature;
  size_t size = 0;
  if (ctx != nullptr && EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1
      && EVP_DigestSign(ctx, nullptr, &size, reinterpret_cast<const unsigned char*>(data.data()),
                        data.size())
           == 1) {
    signature.resize(size);
    if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(signature.data()), &size,
                       reinterpret_cast<const unsigned char*>(data.data()), data.size())
        == 1)
      signature.resize(size);
    else
      signature.clear();
  }
  EVP_MD_CTX_free(ctx);
  return signature.empty() ? std::string{} : base64_encode(signature);
}

bool read_certificate(const std::string& path, std::string& pem, std::string& subject,
                      std::string& error) {
  BIO* in = BIO_new_file(path.c_str(), "r");
  if (in == nullptr) {
    error = "cannot read " + path;
    return false;
  }
  X509* certificate = PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  if (certificate == nullptr) {
    error = path + " holds no PEM certificate";
    ERR_clear_error();
    return false;
  }
  subject = subject_of(certificate);
  BIO* out = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(out, certificate);
  char* data = nullptr;
  auto size = BIO_get_mem_data(out, &data);
  pem.assign(data, static_cast<size_t>(size));
  BIO_free(out);
  X509_free(certificate);
  return true;
}

pkey_ptr read_private_key(const std::string& path, std::string& error) {
  BIO* in = BIO_new_file(path.c_str(), "r");
  if (in == nullptr) {
    error = "cannot read " + path;
    return nullptr;
  }
  EVP_PKEY* key = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  if (key == nullptr) {
    error = path + " holds no PEM private key: " + openssl_error();
    return nullptr;
  }
  return pkey_ptr{key, pkey_deleter{}};
}

certificate_verifier::~certificate_verifier() {
  if (store_ != nullptr)
    X509_STORE_free(store_->store);
  delete store_;
}

std::unique_ptr<certificate_verifier> certificate_verifier::load(const std::string& cafile,
                                                                 std::string& error) {
  std::unique_ptr<certificate_verifier> verifier{new certificate_verifier};
  verifier->store_ = new x509_store;
  verifier->store_->store = X509_STORE_new();
  if (verifier->store_->store == nullptr
      || X509_STORE_load_file(verifier->store_->store, cafile.c_str()) != 1) {
    error = "cannot load the CA certificates of " + cafile + ": " + openssl_error();
    return nullptr;
  }
  return verifier;
}

bool certificate_verifier::verify(std::string_view certificate_pem, std::string_view data,
                                  std::string_view signature_base64, std::string& subject,
                                  std::string& error) const {
  BIO* in = BIO_new_mem_buf(certificate_pem.data(), static_cast<int>(certificate_pem.size()));
  X509* certificate = in == nullptr ? nullptr : PEM_read_bio_X509(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  if (certificate == nullptr) {
    ERR_clear_error();
    error = "no certificate with the command";
    return false;
  }
  bool ok = false;
  X509_STORE_CTX* chain = X509_STORE_CTX_new();
  if (chain != nullptr && X509_STORE_CTX_init(chain, store_->store, certificate, nullptr) == 1) {
    if (X509_verify_cert(chain) == 1)
      ok = true;
    else
      error = std::string{"the certificate does not chain to the admin CA: "}
              + X509_verify_cert_error_string(X509_STORE_CTX_get_error(chain));
  } else {
    error = "cannot verify the certificate: " + openssl_error();
  }
  X509_STORE_CTX_free(chain);
  if (ok) {
    ok = false;
    std::string signature;
    EVP_PKEY* key = X509_get0_pubkey(certificate);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (key != nullptr && ctx != nullptr && base64_decode(signature_base64, signature)
        && EVP_DigestVerifyInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1
        && EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                            signature.size(), reinterpret_cast<const unsigned char*>(data.data()),
                            data.size())
             == 1)
      ok = true;
    else
      error = "the command is not signed by the key of the certificate sent with it";
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
  }
  if (ok)
    subject = subject_of(certificate);
  X509_free(certificate);
  return ok;
}

}  // namespace paybus::crypto
