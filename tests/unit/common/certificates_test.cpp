// Signed admin commands: a certificate from the admin CA and its key's
// signature name who sent a command; nothing else does.

#include <catch2/catch.hpp>

#include "common/certificates.hpp"

using namespace paybus;

namespace {

const std::string data_dir = std::string{PAYBUS_TEST_DATA} + "/admin/";

struct signer {
  std::string pem;
  std::string subject;
  crypto::pkey_ptr key;
};

signer load(const std::string& name) {
  signer out;
  std::string error;
  REQUIRE(crypto::read_certificate(data_dir + name + ".pem", out.pem, out.subject, error));
  out.key = crypto::read_private_key(data_dir + name + ".key", error);
  REQUIRE(out.key);
  return out;
}

}  // namespace

TEST_CASE("certificates: a command signed by a certificate of the CA names its subject") {
  std::string error;
  auto verifier = crypto::certificate_verifier::load(data_dir + "ca.pem", error);
  REQUIRE(verifier);
  auto alice = load("alice");
  CHECK(alice.subject == "CN=alice,O=paybus");
  auto text = crypto::admin_signed_text(1'763'782'200'000, {"channel", "weight", "sim-a", "5"});
  auto signature = crypto::sign_sha256_base64(alice.key.get(), text);
  REQUIRE_FALSE(signature.empty());
  std::string who;
  CHECK(verifier->verify(alice.pem, text, signature, who, error));
  CHECK(who == "CN=alice,O=paybus");

  SECTION("another command under that signature is refused") {
    auto other = crypto::admin_signed_text(1'763'782'200'000, {"channel", "weight", "sim-a", "6"});
    CHECK_FALSE(verifier->verify(alice.pem, other, signature, who, error));
    CHECK(error.find("not signed") != std::string::npos);
  }
  SECTION("a certificate of another CA is refused, even signed by its own key") {
    auto mallory = load("mallory");  // an EC key: signing works for it too
    auto forged = crypto::sign_sha256_base64(mallory.key.get(), text);
    REQUIRE_FALSE(forged.empty());
    CHECK_FALSE(verifier->verify(mallory.pem, text, forged, who, error));
    CHECK(error.find("does not chain") != std::string::npos);
  }
  SECTION("alice's certificate signed by another key is refused") {
    auto mallory = load("mallory");
    auto forged = crypto::sign_sha256_base64(mallory.key.get(), text);
    CHECK_FALSE(verifier->verify(alice.pem, text, forged, who, error));
  }
  SECTION("no certificate, garbage, no signature") {
    CHECK_FALSE(verifier->verify("", text, signature, who, error));
    CHECK_FALSE(verifier->verify("-----BEGIN CERTIFICATE-----\nxx\n", text, signature, who, error));
    CHECK_FALSE(verifier->verify(alice.pem, text, "", who, error));
    CHECK_FALSE(verifier->verify(alice.pem, text, "!!!", who, error));
  }
}

TEST_CASE("certificates: the signed text keeps words apart") {
  CHECK(crypto::admin_signed_text(5, {"a b"}) != crypto::admin_signed_text(5, {"a", "b"}));
  CHECK(crypto::admin_signed_text(5, {"a"}) != crypto::admin_signed_text(6, {"a"}));
}

TEST_CASE("certificates: a CA file that cannot be read is an error") {
  std::string error;
  CHECK_FALSE(crypto::certificate_verifier::load(data_dir + "missing.pem", error));
  CHECK_FALSE(error.empty());
}
