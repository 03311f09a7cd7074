// The order shard: pay_ids from the shard's own space, increasing, and the
// route chosen as the order is issued.

#include <map>
#include <string>

#include <catch2/catch.hpp>

#include "actors/payment/order_shard.hpp"

using namespace paybus;

namespace {

payment_order one(const std::string& no, int64_t amount, std::string channel = {}) {
  payment_order o;
  o.merchant_id = "demo";
  o.merchant_order_no = no;
  o.amount_minor = amount;
  o.currency = "CNY";
  o.channel_id = std::move(channel);
  return o;
}

}  // namespace

TEST_CASE("a shard issues increasing pay_ids of its own space, with the order as asked") {
  order_shard shard{order_shard_settings{9, 3, 0, {}}};
  auto a = shard.issue(one("A-1", 100), 1'763'782'200'123);
  auto b = shard.issue(one("B-1", 250), 1'763'782'200'123);
  auto c = shard.issue(one("C-1", 100), 1'763'782'200'100);  // the clock went back
  for (const auto& record : {a, b, c}) {
    CHECK(record.pay_id.size() == pay_id_length);
    CHECK(record.pay_id.substr(13, 7) == "0000903");  // instance 9, shard 3
    CHECK(record.instance_id == 9);
    CHECK(record.routed_channel.empty());  // no channels configured
  }
  CHECK(a.pay_id < b.pay_id);
  CHECK(b.pay_id < c.pay_id);
  CHECK(a.created_at_ms == 1'763'782'200'123);
  CHECK(b.order.merchant_order_no == "B-1");
  CHECK(b.order.amount_minor == 250);
}

TEST_CASE("a shard never issues in the time step of its floor or before") {
  order_shard shard{order_shard_settings{1, 0, 1'763'782'200'500, {}}};
  auto record = shard.issue(one("A-1", 100), 1'763'782'200'123);
  auto parts = parse_pay_id(record.pay_id);
  REQUIRE(parts);
  CHECK(parts->unix_ms > 1'763'782'200'500);
}

TEST_CASE("a shard routes by weight, or to the channel the order names") {
  order_shard shard{order_shard_settings{1, 0, 0, {{"sim-a", 3}, {"sim-b", 1}}}};
  std::map<std::string, int> routed;
  for (int i = 0; i < 4000; ++i)
    ++routed[shard.issue(one("W-" + std::to_string(i), 100), 1'763'782'200'000).routed_channel];
  CHECK(routed.size() == 2);
  CHECK(routed["sim-a"] > 2850);  // 3000 expected, a standard deviation of 27
  CHECK(routed["sim-a"] < 3150);
  for (int i = 0; i < 20; ++i)
    CHECK(shard.issue(one("N-" + std::to_string(i), 100, "sim-b"), 1'763'782'200'000).routed_channel
          == "sim-b");
}

TEST_CASE("a shard follows the operator's switches: weights, disabled channels, a held breaker") {
  switch_state state;
  state.channels = {{"sim-a", 1, true, false, false}, {"sim-b", 1, true, false, false}};
  live_switches switches{state};
  order_shard_settings settings{1, 0, 0, {{"sim-a", 1}, {"sim-b", 1}}};
  settings.switches = &switches;
  order_shard shard{settings};
  auto routed = [&](int count) {
    std::map<std::string, int> seen;
    for (int i = 0; i < count; ++i)
      ++seen[shard.issue(one("N-" + std::to_string(i), 100), 1'763'782'200'000).routed_channel];
    return seen;
  };
  auto both = routed(200);
  CHECK(both["sim-a"] > 50);
  CHECK(both["sim-b"] > 50);
  state.channels[0].enabled = false;
  switches.replace(state);
  CHECK(routed(200) == std::map<std::string, int>{{"sim-b", 200}});
  state.channels[0].enabled = true;
  state.channels[1].breaker_forced = true;
  switches.replace(state);
  CHECK(routed(200) == std::map<std::string, int>{{"sim-a", 200}});
  state.channels[1].breaker_forced = false;
  state.channels[0].weight = 0;
  switches.replace(state);
  CHECK(routed(200) == std::map<std::string, int>{{"sim-b", 200}});
  // A payment naming a disabled channel is not routed anywhere else.
  state.channels[0] = {"sim-a", 1, false, false, true};
  switches.replace(state);
  CHECK(shard.issue(one("named", 100, "sim-a"), 1'763'782'200'000).routed_channel.empty());
}
