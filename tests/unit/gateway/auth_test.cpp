#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/crypto.hpp"
#include "gateway/auth.hpp"

using namespace paybus;

namespace {

std::string read_text(const std::string& name) {
  std::ifstream file{std::string{PAYBUS_TEST_DATA} + "/" + name};
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

const std::string body = R"({"merchant_order_no":"A-1001","amount":1999,"currency":"CNY"})";

// Vectors computed independently with `openssl dgst` (see tests/data/README).
const std::string body_sha256 = "4ec3d1ccdf768e63650a98b9313a7d8ef36be04a29cbb4b702bd4cc8177b9066";
const std::string hmac_demo_secret
  = "16ce17e63c13744917295f47226f0896e1b3526de1632107265e52423a8cdbd6";

}  // namespace

TEST_CASE("canonical string joins method, target, timestamp, nonce and body hash") {
  auto text = canonical_string("POST", "/v1/payments", "1763782200", "abcdefghijklmnop0123", body);
  CHECK(text == "POST\n/v1/payments\n1763782200\nabcdefghijklmnop0123\n" + body_sha256);
  CHECK(text == read_text("canonical.txt"));
  CHECK(crypto::sha256_hex("")
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("hmac-sha256 matches openssl's") {
  auto text = read_text("canonical.txt");
  CHECK(crypto::hmac_sha256_hex("demo-secret", text) == hmac_demo_secret);
}

TEST_CASE("rsa-sha256 verifies openssl's signature and refuses a changed message") {
  std::string error;
  auto key = crypto::load_public_key(std::string{PAYBUS_TEST_DATA} + "/merchant.pub.pem", error);
  REQUIRE(key);
  auto signature = read_text("canonical.sig.b64");
  auto text = read_text("canonical.txt");
  CHECK(crypto::rsa_sha256_verify_base64(key.get(), text, signature));
  CHECK_FALSE(crypto::rsa_sha256_verify_base64(key.get(), text + "x", signature));
  CHECK_FALSE(crypto::rsa_sha256_verify_base64(key.get(), text, "bm9wZQ=="));
  CHECK_FALSE(crypto::rsa_sha256_verify_base64(key.get(), text, "!!!"));
}

TEST_CASE("our rsa signature verifies with the public key, and both PKCS#8 and PKCS#1 load") {
  std::string error;
  for (const char* name : {"merchant.key.pem", "merchant.pkcs1.key.pem"}) {
    auto private_key = crypto::load_private_key(std::string{PAYBUS_TEST_DATA} + "/" + name, error);
    REQUIRE(private_key);
    auto public_key = crypto::load_public_key(std::string{PAYBUS_TEST_DATA} + "/merchant.pub.pem",
                                              error);
    auto signature = crypto::rsa_sha256_sign_base64(private_key.get(), "hello");
    CHECK(crypto::rsa_sha256_verify_base64(public_key.get(), "hello", signature));
    // PKCS#1 v1.5 is deterministic: byte for byte what `openssl dgst
    // -sha256 -sign` made of the same text (tests/data/README.md), and again
    // with the context this thread now keeps for the key.
    for (int round = 0; round < 2; ++round)
      CHECK(crypto::rsa_sha256_sign_base64(private_key.get(), read_text("canonical.txt"))
            == read_text("canonical.sig.b64"));
  }
}

TEST_CASE("threads signing with one key each sign as the key does") {
  std::string error;
  auto key = crypto::load_private_key(std::string{PAYBUS_TEST_DATA} + "/merchant.key.pem", error);
  REQUIRE(key);
  // Each thread signs through its own context on its own copy of the key;
  // PKCS#1 v1.5 is deterministic, so every signature is openssl's.
  std::vector<std::string> signatures(3);
  std::vector<std::thread> threads;
  for (auto& signature : signatures)
    threads.emplace_back(
      [&] { signature = crypto::rsa_sha256_sign_base64(key.get(), read_text("canonical.txt")); });
  for (auto& thread : threads)
    thread.join();
  for (const auto& signature : signatures)
    CHECK(signature == read_text("canonical.sig.b64"));
  CHECK(crypto::rsa_sha256_sign_base64(nullptr, "hello").empty());
}

TEST_CASE("private-key operations are counted with the CPU time they took, verifications are not") {
  std::string error;
  auto key = crypto::load_private_key(std::string{PAYBUS_TEST_DATA} + "/merchant.key.pem", error);
  REQUIRE(key);
  auto public_key = crypto::load_public_key(std::string{PAYBUS_TEST_DATA} + "/merchant.pub.pem",
                                            error);
  REQUIRE(public_key);
  // The thread's context is made.
  auto signature = crypto::rsa_sha256_sign_base64(key.get(), "warm");
  auto before = crypto::private_key_usage_so_far();
  for (int i = 0; i < 3; ++i)
    REQUIRE_FALSE(crypto::rsa_sha256_sign_base64(key.get(), "hello " + std::to_string(i)).empty());
  for (int i = 0; i < 5; ++i)
    REQUIRE(crypto::rsa_sha256_verify_base64(public_key.get(), "warm", signature));
  CHECK(crypto::rsa_sha256_sign_base64(nullptr, "hello").empty());  // no key: no operation
  auto after = crypto::private_key_usage_so_far();
  CHECK(after.operations - before.operations == 3);
  // An RSA-2048 signature takes hundreds of microseconds of CPU; three take
  // more than 30 and well under a second, on any machine that runs the tests.
  CHECK(after.cpu_ns - before.cpu_ns > 30'000u);
  CHECK(after.cpu_ns - before.cpu_ns < 1'000'000'000u);
}

TEST_CASE("a channel's CA file holds PEM certificates and nothing else") {
  auto data = std::string{PAYBUS_TEST_DATA} + "/";
  std::string error;
  CHECK(crypto::count_certificates(data + "ca.pem", error) == 1);
  auto two = std::filesystem::temp_directory_path() / "paybus-two-certificates.pem";
  {
    std::ofstream out{two};
    out << read_text("ca.pem") << read_text("ca.pem");
  }
  CHECK(crypto::count_certificates(two.string(), error) == 2);
  auto damaged = read_text("ca.pem");
  damaged.replace(damaged.size() / 2, 8, "!!!!!!!!");
  {
    std::ofstream out{two};
    out << read_text("ca.pem") << damaged;
  }
  error.clear();
  CHECK(crypto::count_certificates(two.string(), error) == 0);
  CHECK(error.find("does not parse") != std::string::npos);
  std::filesystem::remove(two);
  error.clear();
  CHECK(crypto::count_certificates(data + "merchant.pub.pem", error) == 0);
  CHECK(error.find("no PEM certificate") != std::string::npos);
  error.clear();
  CHECK(crypto::count_certificates(data + "no-such-file.pem", error) == 0);
  CHECK_FALSE(error.empty());
}

TEST_CASE("RSA keys under 2048 bits are refused") {
  std::string error;
  CHECK_FALSE(crypto::load_public_key(std::string{PAYBUS_TEST_DATA} + "/short.pub.pem", error));
  CHECK(error.find("2048") != std::string::npos);
  CHECK_FALSE(crypto::load_private_key(std::string{PAYBUS_TEST_DATA} + "/short.key.pem", error));
  CHECK_FALSE(crypto::load_public_key("/nonexistent.pem", error));
}

TEST_CASE("nonce, timestamp and signature header syntax") {
  CHECK(valid_nonce("abcdefghijklmnop"));
  CHECK(valid_nonce(std::string(64, 'a')));
  CHECK_FALSE(valid_nonce(std::string(15, 'a')));
  CHECK_FALSE(valid_nonce(std::string(65, 'a')));
  CHECK_FALSE(valid_nonce("abcdefghijklmno!"));
  CHECK(valid_nonce("ABC_def-0123456789"));
  int64_t seconds = 0;
  CHECK(parse_timestamp("1763782200", seconds));
  CHECK(seconds == 1763782200);
  CHECK_FALSE(parse_timestamp("", seconds));
  CHECK_FALSE(parse_timestamp("-1", seconds));
  CHECK_FALSE(parse_timestamp("12a", seconds));
  CHECK_FALSE(parse_timestamp("1234567890123", seconds));
  std::string_view scheme, value;
  CHECK(parse_signature_header("hmac-sha256=abc", scheme, value));
  CHECK(scheme == "hmac-sha256");
  CHECK(value == "abc");
  CHECK_FALSE(parse_signature_header("hmac-sha256=", scheme, value));
  CHECK_FALSE(parse_signature_header("md5=abc", scheme, value));
  CHECK_FALSE(parse_signature_header("abc", scheme, value));
}

TEST_CASE("authenticate: order of checks and every outcome") {
  std::unordered_map<std::string, merchant_credentials> merchants;
  merchants["demo"] = merchant_credentials{"demo", false, "demo-secret", nullptr, ""};
  nonce_cache nonces{600'000};
  const int64_t now_ms = 1763782200'000;
  std::string timestamp = "1763782200";
  std::string nonce = "abcdefghijklmnop0123";
  std::string signature = "hmac-sha256=" + hmac_demo_secret;
  auth_headers headers{"demo", timestamp, nonce, signature, false};
  const merchant_credentials* who = nullptr;
  auto check = [&](const auth_headers& h, int64_t at_ms) {
    auto seen = [&](std::string_view m, std::string_view n) { return nonces.seen(m, n); };
    return authenticate(merchants, h, "POST", "/v1/payments", body, at_ms, 300, seen, &who);
  };

  CHECK(check(headers, now_ms) == auth_failure::none);
  REQUIRE(who != nullptr);
  CHECK(who->id == "demo");
  CHECK(check(headers, now_ms + 300'000) == auth_failure::none);
  CHECK(check(headers, now_ms + 301'000) == auth_failure::stale_timestamp);
  CHECK(check(headers, now_ms - 301'000) == auth_failure::stale_timestamp);

  auto unknown = headers;
  unknown.principal = "nobody";
  CHECK(check(unknown, now_ms) == auth_failure::unauthenticated);
  auto wrong = headers;
  std::string bad_signature = "hmac-sha256=" + std::string(64, '0');
  wrong.signature = bad_signature;
  CHECK(check(wrong, now_ms) == auth_failure::unauthenticated);
  CHECK(who == nullptr);
  auto rsa_scheme = headers;
  rsa_scheme.signature = "rsa-sha256=AAAA";
  CHECK(check(rsa_scheme, now_ms) == auth_failure::unauthenticated);
  auto duplicated = headers;
  duplicated.duplicated = true;
  CHECK(check(duplicated, now_ms) == auth_failure::unauthenticated);
  auto missing = headers;
  missing.nonce = "";
  CHECK(check(missing, now_ms) == auth_failure::unauthenticated);

  nonces.remember("demo", nonce, now_ms);
  CHECK(check(headers, now_ms) == auth_failure::replayed_request);
  // Another merchant's nonce does not collide.
  CHECK_FALSE(nonces.seen("other", nonce));
}

TEST_CASE("nonce cache forgets after its retention, not before") {
  nonce_cache nonces{600'000};
  nonces.remember("demo", "n1aaaaaaaaaaaaaaa", 1000);
  nonces.remember("demo", "n2aaaaaaaaaaaaaaa", 2000);
  nonces.expire(601'000);
  CHECK(nonces.seen("demo", "n1aaaaaaaaaaaaaaa"));
  nonces.expire(601'001);
  CHECK_FALSE(nonces.seen("demo", "n1aaaaaaaaaaaaaaa"));
  CHECK(nonces.seen("demo", "n2aaaaaaaaaaaaaaa"));
  CHECK(nonces.size() == 1);
}

TEST_CASE("constant-time comparison and base64") {
  CHECK(crypto::constant_time_equal("abc", "abc"));
  CHECK_FALSE(crypto::constant_time_equal("abc", "abd"));
  CHECK_FALSE(crypto::constant_time_equal("abc", "abcd"));
  std::string decoded;
  CHECK(crypto::base64_decode(crypto::base64_encode("hello world"), decoded));
  CHECK(decoded == "hello world");
  CHECK(crypto::base64_decode(crypto::base64_encode("ab"), decoded));
  CHECK(decoded == "ab");
  CHECK_FALSE(crypto::base64_decode("abc", decoded));
  CHECK_FALSE(crypto::base64_decode("ab$=", decoded));
}
