#include <catch2/catch.hpp>

#include "common/clock.hpp"

using namespace paybus;

TEST_CASE("RFC 3339 times: what a channel may send as paid_at, and what is refused") {
  int64_t ms = -1;
  REQUIRE(parse_rfc3339_ms("2026-11-22T03:30:00.123Z", ms));
  CHECK(ms == 1795318200123);
  CHECK(format_rfc3339_ms(ms) == "2026-11-22T03:30:00.123Z");
  REQUIRE(parse_rfc3339_ms("2026-11-22T03:30:00Z", ms));
  CHECK(ms == 1795318200000);
  REQUIRE(parse_rfc3339_ms("2028-02-29T00:00:00Z", ms));  // a leap day
  REQUIRE(parse_rfc3339_ms("1970-01-01T00:00:00.000Z", ms));
  CHECK(ms == 0);

  ms = 42;
  for (const char* bad : {
         "0000-01-01T00:00:00Z",  // PostgreSQL refuses year 0: the row would stop the feed
         "1969-12-31T23:59:59Z",  // before 1970
         "2026-02-30T00:00:00Z",  // not a day of February
         "2026-00-10T00:00:00Z",  // month 0
         "2026-13-10T00:00:00Z",
         "2026-11-00T00:00:00Z",
         "2026-11-22T24:00:00Z",
         "2026-11-22T23:60:00Z",
         "2026-11-22T23:59:60Z",  // a leap second: not accepted
         "2026-11-22T-1:30:00Z",  // a sign where a digit goes
         "-001-11-22T03:30:00Z",
         "2026-11-22T03:30:00.-12Z",
         "2026-11-22 03:30:00Z",
         "2026-11-22T03:30:00+08:00",
         "2026-11-22T03:30:00.123",
         "2026-11-22T03:30Z",
         "",
       }) {
    INFO(bad);
    CHECK_FALSE(parse_rfc3339_ms(bad, ms));
  }
  CHECK(ms == 42);  // untouched by what it refused
}
