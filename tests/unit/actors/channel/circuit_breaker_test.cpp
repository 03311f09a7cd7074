#include <catch2/catch.hpp>

#include "actors/channel/circuit_breaker.hpp"

using namespace paybus;

TEST_CASE("breaker: closed, opens after consecutive failures, one probe when half-open") {
  circuit_breaker breaker{3, 1000};
  CHECK(breaker.current(0) == circuit_breaker::state::closed);
  for (int i = 0; i < 2; ++i) {
    REQUIRE(breaker.allow(0));
    breaker.record(false, 0);
  }
  CHECK(breaker.current(0) == circuit_breaker::state::closed);
  REQUIRE(breaker.allow(0));
  breaker.record(true, 0);  // a success resets the count
  for (int i = 0; i < 3; ++i) {
    REQUIRE(breaker.allow(10));
    breaker.record(false, 10);
  }
  CHECK(breaker.current(10) == circuit_breaker::state::open);
  CHECK_FALSE(breaker.allow(500));
  CHECK_FALSE(breaker.allow(1009));
  // Half-open: exactly one probe.
  CHECK(breaker.current(1010) == circuit_breaker::state::half_open);
  CHECK(breaker.allow(1010));
  CHECK_FALSE(breaker.allow(1011));
  // A failed probe opens it again for the full time.
  breaker.record(false, 1020);
  CHECK(breaker.current(1500) == circuit_breaker::state::open);
  CHECK_FALSE(breaker.allow(2019));
  CHECK(breaker.allow(2020));
  // A successful probe closes it.
  breaker.record(true, 2030);
  CHECK(breaker.current(2030) == circuit_breaker::state::closed);
  CHECK(breaker.allow(2031));
  CHECK(breaker.allow(2032));
}

TEST_CASE("breaker: an error rate of half the last 20 opens it without a streak") {
  circuit_breaker breaker{5, 1000};
  // Alternating success and failure: never 5 in a row, but half fail.
  for (int i = 0; i < 19; ++i) {
    REQUIRE(breaker.allow(0));
    breaker.record(i % 2 == 0, 0);
    CHECK(breaker.current(0) == circuit_breaker::state::closed);
  }
  REQUIRE(breaker.allow(0));
  breaker.record(false, 0);  // the 20th: 10 of 20 failed
  CHECK(breaker.current(0) == circuit_breaker::state::open);
  // A quarter failing keeps it closed.
  circuit_breaker steady{5, 1000};
  for (int i = 0; i < 100; ++i) {
    REQUIRE(steady.allow(0));
    steady.record(i % 4 != 0, 0);
  }
  CHECK(steady.current(0) == circuit_breaker::state::closed);
}
