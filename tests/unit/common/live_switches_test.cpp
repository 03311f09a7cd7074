// The operator's switches as kept in the store and shared between threads.

#include <catch2/catch.hpp>

#include "common/live_switches.hpp"

using namespace paybus;

namespace {

switch_state configured() {
  switch_state state;
  state.channels = {{"sim-a", 100, true, false, false}, {"sim-b", 50, true, false, false}};
  return state;
}

}  // namespace

TEST_CASE("switches: what the console changed is kept and laid over the configuration") {
  auto state = configured();
  state.channels[1].weight = 7;
  state.channels[1].enabled = false;
  state.channels[1].breaker_forced = true;
  state.channels[1].changed = true;
  state.paused[static_cast<size_t>(degrade_switch::db_feed)] = true;
  state.log_level = "debug";
  auto stored = encode_switches(state);

  // The configuration changed meanwhile: sim-a's weight (never set through the
  // console: the configuration's counts), a new channel, sim-b still there.
  auto next = configured();
  next.channels[0].weight = 300;
  next.channels.push_back({"sim-c", 10, true, false, false});
  std::vector<std::string> dropped;
  std::string error;
  REQUIRE(overlay_switches(stored, next, dropped, error));
  CHECK(dropped.empty());
  CHECK(next.channels[0].weight == 300);
  CHECK_FALSE(next.channels[0].changed);
  CHECK(next.channels[1].weight == 7);
  CHECK_FALSE(next.channels[1].enabled);
  CHECK(next.channels[1].breaker_forced);
  CHECK(next.channels[1].changed);
  CHECK(next.channels[2].weight == 10);
  CHECK(next.is_paused(degrade_switch::db_feed));
  CHECK_FALSE(next.is_paused(degrade_switch::webhooks));
  CHECK(next.log_level == "debug");
}

TEST_CASE("switches: a channel no longer configured is named, not kept") {
  auto state = configured();
  state.channels[0].changed = true;
  auto stored = encode_switches(state);
  switch_state only_b;
  only_b.channels = {{"sim-b", 50, true, false, false}};
  std::vector<std::string> dropped;
  std::string error;
  REQUIRE(overlay_switches(stored, only_b, dropped, error));
  CHECK(dropped == std::vector<std::string>{"sim-a"});
  CHECK(only_b.channels.size() == 1);
}

TEST_CASE("switches: damaged JSON is refused and changes nothing") {
  for (
    const auto* stored :
    {"", "[]", "{", R"({"channels": {}})",
     R"({"channels": {"sim-a": {"weight": "x", "enabled": true, "breaker_forced": false}}, "paused": {}})",
     R"({"channels": {"sim-a": {"weight": 10001, "enabled": true, "breaker_forced": false}}, "paused": {}})",
     R"({"channels": {"sim-a": {"weight": 5}}, "paused": {}})"}) {
    auto state = configured();
    std::vector<std::string> dropped;
    std::string error;
    INFO(stored);
    CHECK_FALSE(overlay_switches(stored, state, dropped, error));
    CHECK_FALSE(error.empty());
    CHECK(state.channels[0].weight == 100);
  }
}

TEST_CASE("switches: readers see a change through their view, once") {
  live_switches switches{configured()};
  switch_view view{&switches};
  CHECK(view.refresh());
  CHECK(view.state().channels[0].weight == 100);
  CHECK_FALSE(view.refresh());
  auto next = configured();
  next.channels[0].weight = 1;
  next.paused[static_cast<size_t>(degrade_switch::webhooks)] = true;
  switches.replace(next);
  CHECK(switches.paused(degrade_switch::webhooks));
  CHECK_FALSE(switches.paused(degrade_switch::reconciliation));
  CHECK(view.refresh());
  CHECK(view.state().channels[0].weight == 1);
  CHECK_FALSE(view.refresh());
}

TEST_CASE("switches: names of the degrade switches") {
  for (auto which : all_degrade_switches)
    CHECK(parse_degrade_switch(to_string(which)) == which);
  CHECK_FALSE(parse_degrade_switch("payments"));
}
