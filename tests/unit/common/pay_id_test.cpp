#include <set>

#include <catch2/catch.hpp>

#include "common/pay_id.hpp"

using namespace paybus;

TEST_CASE("pay_id format: 24 digits that embed time, instance, shard and counter") {
  auto text = format_pay_id({1763782200123, 42, 7, 15});
  CHECK(text == "176378220012300042070015");
  CHECK(text.size() == pay_id_length);
  auto parts = parse_pay_id(text);
  REQUIRE(parts);
  CHECK(parts->unix_ms == 1763782200123);
  CHECK(parts->instance_id == 42);
  CHECK(parts->shard == 7);
  CHECK(parts->counter == 15);
  CHECK_FALSE(parse_pay_id("12345"));
  CHECK_FALSE(parse_pay_id("17637822001230004207001x"));
}

TEST_CASE("ids increase within a shard, also when the clock stands still or goes back") {
  pay_id_generator generator{1, 0, 1000};
  std::string previous;
  int64_t clock[] = {999, 1000, 1000, 1001, 1001, 1001, 900, 1500, 1400, 1400};
  for (auto now : clock) {
    auto id = generator.next(now);
    CHECK(id > previous);
    previous = id;
  }
}

TEST_CASE("the start step is never reused: the first id lands after the floor") {
  pay_id_generator generator{1, 0, 5000};
  auto first = parse_pay_id(generator.next(5000));
  REQUIRE(first);
  CHECK(first->unix_ms == 5001);
  pay_id_generator later{1, 0, 5000};
  CHECK(parse_pay_id(later.next(7000))->unix_ms == 7000);
}

TEST_CASE("a full step borrows the next one") {
  pay_id_generator generator{3, 1, 0};
  std::set<std::string> ids;
  for (int i = 0; i < counter_per_step + 5; ++i)
    ids.insert(generator.next(10));
  CHECK(ids.size() == counter_per_step + 5);
  CHECK(parse_pay_id(*ids.rbegin())->unix_ms == 11);
}

TEST_CASE("unique across shards, instances and restarts") {
  std::set<std::string> ids;
  size_t issued = 0;
  int64_t last_ms = 100;
  for (int restart = 0; restart < 3; ++restart) {
    // A restart's floor is the newest stored id's step (what paybusd reads
    // from the store), so a restart within the same millisecond is safe.
    int64_t floor = last_ms;
    for (int32_t instance = 1; instance <= 3; ++instance) {
      for (int32_t shard = 0; shard < 4; ++shard) {
        pay_id_generator generator{instance, shard, floor};
        for (int i = 0; i < 3000; ++i) {
          auto id = generator.next(floor + i / 1000);  // a clock that barely moves
          ids.insert(id);
          ++issued;
          last_ms = std::max(last_ms, parse_pay_id(id)->unix_ms);
        }
      }
    }
  }
  CHECK(ids.size() == issued);
}
