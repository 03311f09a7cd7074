// SHA-256 and HMAC-SHA256 with the algorithms fetched once and a context a
// key kept by each thread: the answers are the standard's, whatever the
// order of keys, however many keys a thread sees.

#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

#include "common/crypto.hpp"

using namespace paybus;

namespace {

// RFC 4231, test case 2.
const std::string jefe_mac = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
const std::string jefe_data = "what do ya want for nothing?";

}  // namespace

TEST_CASE("sha256_hex gives the standard digest, call after call") {
  for (int i = 0; i < 3; ++i) {
    CHECK(crypto::sha256_hex("abc")
          == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(crypto::sha256_hex("")
          == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  }
}

TEST_CASE("hmac_sha256_hex: a reused key's context starts again from its key") {
  CHECK(crypto::hmac_sha256_hex("Jefe", jefe_data) == jefe_mac);
  CHECK(crypto::hmac_sha256_hex("Jefe", jefe_data) == jefe_mac);
  auto other = crypto::hmac_sha256_hex("Jeff", jefe_data);
  CHECK(other != jefe_mac);
  CHECK(crypto::hmac_sha256_hex("Jefe", jefe_data) == jefe_mac);  // interleaved keys
  CHECK(crypto::hmac_sha256_hex("Jeff", jefe_data) == other);
}

TEST_CASE("hmac_sha256_hex: an empty key, and more keys than a thread keeps") {
  auto empty = crypto::hmac_sha256_hex("", "data");
  CHECK(empty.size() == 64);
  CHECK(crypto::hmac_sha256_hex(std::string_view{}, "data") == empty);
  std::vector<std::string> first;
  for (int i = 0; i < 200; ++i)
    first.push_back(crypto::hmac_sha256_hex("key-" + std::to_string(i), jefe_data));
  for (int i = 0; i < 200; ++i)
    CHECK(crypto::hmac_sha256_hex("key-" + std::to_string(i), jefe_data)
          == first[static_cast<size_t>(i)]);
  CHECK(crypto::hmac_sha256_hex("Jefe", jefe_data) == jefe_mac);
}

TEST_CASE("hmac_sha256_hex: threads each with their own contexts agree") {
  std::vector<std::string> answers(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < answers.size(); ++t)
    threads.emplace_back([&answers, t] {
      for (int i = 0; i < 1000; ++i)
        answers[t] = crypto::hmac_sha256_hex("Jefe", jefe_data);
    });
  for (auto& thread : threads)
    thread.join();
  for (const auto& answer : answers)
    CHECK(answer == jefe_mac);
}
