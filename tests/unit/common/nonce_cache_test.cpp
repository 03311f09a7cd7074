// Nonces remembered per principal for the retention window: a nonce is seen
// again only for the principal that used it, and only until it expires.

#include <catch2/catch.hpp>

#include <string>

#include "common/nonce_cache.hpp"

using namespace paybus;

TEST_CASE("a remembered nonce is seen again for its principal only") {
  nonce_cache cache{300'000};
  cache.remember("demo", "abcdefghijklmnop", 1'000);
  CHECK(cache.seen("demo", "abcdefghijklmnop"));
  CHECK_FALSE(cache.seen("other", "abcdefghijklmnop"));
  CHECK_FALSE(cache.seen("demo", "abcdefghijklmnoq"));
  // The principal and the nonce are kept apart: "ab"+"c" is not "a"+"bc".
  cache.remember("ab", "c", 1'000);
  CHECK(cache.seen("ab", "c"));
  CHECK_FALSE(cache.seen("a", "bc"));
  CHECK_FALSE(cache.seen("abc", ""));
}

TEST_CASE("a nonce remembered twice is kept once") {
  nonce_cache cache{300'000};
  cache.remember("demo", "abcdefghijklmnop", 1'000);
  cache.remember("demo", "abcdefghijklmnop", 2'000);
  CHECK(cache.size() == 1);
}

TEST_CASE("a nonce is forgotten once its retention has passed") {
  nonce_cache cache{300'000};
  cache.remember("demo", "first-nonce-0000", 1'000);
  cache.remember("demo", "second-nonce-000", 100'000);
  cache.expire(301'000);
  CHECK(cache.seen("demo", "first-nonce-0000"));  // exactly at the edge: kept
  cache.expire(301'001);
  CHECK_FALSE(cache.seen("demo", "first-nonce-0000"));
  CHECK(cache.seen("demo", "second-nonce-000"));
  CHECK(cache.size() == 1);
}

TEST_CASE("principals and nonces longer than the stack buffer are remembered as well") {
  nonce_cache cache{300'000};
  const std::string principal(200, 'p');
  const std::string nonce(200, 'n');
  cache.remember(principal, nonce, 1'000);
  CHECK(cache.seen(principal, nonce));
  CHECK_FALSE(cache.seen(principal, std::string(199, 'n') + "m"));
  // The same text, joined at a different place, is another key.
  CHECK_FALSE(cache.seen(principal + "n", std::string(199, 'n')));
}
