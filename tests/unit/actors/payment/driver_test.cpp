// The coordinator's decisions without actors or clocks: each event comes in
// with its time, and the actions that come out are checked and answered by
// hand, as the coordinator would carry them out.

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "actors/payment/driver.hpp"

using namespace paybus;

namespace {

constexpr int64_t start_unix_ms = 1'763'782'200'000;

moment at(int64_t ms) {
  return {ms, start_unix_ms + ms};
}

payment_record payment(const std::string& pay_id, const std::string& routed_channel,
                       int64_t expire_seconds = 900, int64_t created_ms = 0) {
  payment_record r;
  r.pay_id = pay_id;
  r.order.merchant_id = "demo";
  r.order.merchant_order_no = "O-" + pay_id;
  r.order.amount_minor = 1999;
  r.order.currency = "CNY";
  r.order.expire_seconds = expire_seconds;
  r.created_at_ms = start_unix_ms + created_ms;
  r.routed_channel = routed_channel;
  return r;
}

/// The driver, answered as the coordinator answers it: each answer carries
/// the `op` of the payment's action in flight (noted as actions come out).
struct test_driver {
  payment_driver inner;
  std::map<std::string, uint64_t> ops;

  drive_actions note(drive_actions actions) {
    for (const auto& action : actions)
      if (action.op != 0)
        ops[action.pay_id] = action.op;
    return actions;
  }
  drive_actions admit(std::vector<payment_record> records, bool resumed, moment now) {
    return note(inner.admit(std::move(records), resumed, now));
  }
  drive_actions tick(moment now) {
    return note(inner.tick(now));
  }
  drive_actions route_recorded(const std::string& pay_id, const std::string&, bool recorded,
                               moment now) {
    return note(inner.route_recorded(pay_id, ops[pay_id], recorded, now));
  }
  drive_actions paid(const std::string& pay_id, const std::string&, const channel_outcome& outcome,
                     moment now) {
    return note(inner.paid(pay_id, ops[pay_id], outcome, now));
  }
  drive_actions queried(const std::string& pay_id, const std::string&,
                        const channel_outcome& outcome, moment now) {
    return note(inner.queried(pay_id, ops[pay_id], outcome, now));
  }
  void result_written(const std::string& pay_id) {
    inner.result_written(pay_id, ops[pay_id]);
  }
  drive_actions result_failed(const std::string& pay_id, moment now) {
    return note(inner.result_failed(pay_id, ops[pay_id], now));
  }
  drive_actions unfinished_read(std::vector<payment_record> records, uint32_t limit, moment now) {
    return note(inner.unfinished_read(std::move(records), limit, now));
  }
  void settled(const std::string& pay_id) {
    inner.settled(pay_id);
  }
  size_t driving() const {
    return inner.driving();
  }
};

/// A driver past its start: its first tick read the store's unfinished
/// payments, and there were none.
test_driver driver_of(std::vector<std::string> ids, size_t max_in_flight = 16,
                      size_t max_in_memory = 100) {
  std::vector<driver_channel> channels;
  for (auto& id : ids)
    channels.push_back({id, 1, max_in_flight, 10'000});
  test_driver driver{payment_driver{std::move(channels), max_in_memory, rule_timing{}, at(0), 7},
                     {}};
  auto first = driver.tick(at(0));
  REQUIRE(first.size() == 1);
  REQUIRE(first[0].what == drive_action::kind::read_unfinished);
  CHECK(first[0].from.empty());  // from the start of the dispatch family
  CHECK(driver.unfinished_read({}, first[0].limit, at(0)).empty());
  return driver;
}

channel_outcome said(const std::string& pay_id, const std::string& channel,
                     const std::string& status) {
  auto parsed = parse_channel_status(status);
  REQUIRE(parsed);
  return {pay_id, channel, *parsed, status == "SUCCEEDED" ? "T-" + pay_id : "", ""};
}

std::vector<drive_action::kind> kinds(const drive_actions& actions) {
  std::vector<drive_action::kind> out;
  for (const auto& action : actions)
    out.push_back(action.what);
  return out;
}

using kind = drive_action::kind;

}  // namespace

TEST_CASE(
  "driver: a new payment goes to the channel chosen at acceptance, and its answer is written") {
  auto driver = driver_of({"sim-a"});
  auto actions = driver.admit({payment("P1", "sim-a")}, false, at(0));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::pay});  // routed already: no route write
  CHECK(actions[0].channel_id == "sim-a");
  CHECK(actions[0].record.pay_id == "P1");
  actions = driver.paid("P1", "sim-a", said("P1", "sim-a", "SUCCEEDED"), at(40));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
  const auto& result = actions[0].result;
  CHECK(result.status == payment_status::succeeded);
  CHECK(result.channel_id == "sim-a");
  CHECK(result.channel_txn_id == "T-P1");
  CHECK(result.amount_minor == 1999);
  CHECK(result.finished_at_ms == start_unix_ms + 40);
  CHECK(result.source == result_source::channel);
  driver.result_written("P1");
  CHECK(driver.driving() == 0);
}

TEST_CASE("driver: a payment with no route has one written before any channel hears of it") {
  auto driver = driver_of({"sim-a"});
  auto actions = driver.admit({payment("P1", "")}, false, at(0));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_route});
  CHECK(actions[0].channel_id == "sim-a");
  actions = driver.route_recorded("P1", "sim-a", true, at(1));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::pay});
  CHECK(actions[0].record.routed_channel == "sim-a");
  // A route the store refuses (final already): dropped, never sent.
  driver.admit({payment("P2", "")}, false, at(2));
  CHECK(driver.route_recorded("P2", "sim-a", false, at(3)).empty());
  CHECK(driver.driving() == 1);
}

TEST_CASE("driver: an UNKNOWN outcome is asked of the same channel, never sent elsewhere") {
  auto driver = driver_of({"sim-a", "sim-b"});
  driver.admit({payment("P1", "sim-a")}, false, at(0));
  CHECK(driver.paid("P1", "sim-a", said("P1", "sim-a", "UNKNOWN"), at(10)).empty());
  CHECK(driver.tick(at(10 + 499)).empty());
  auto actions = driver.tick(at(10 + 500));  // rule_timing::unknown_query_ms
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
  CHECK(actions[0].channel_id == "sim-a");
  actions = driver.queried("P1", "sim-a", said("P1", "sim-a", "SUCCEEDED"), at(520));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
  CHECK(actions[0].result.source == result_source::query);
}

TEST_CASE("driver: a NOT_FOUND before the channel's settle time is asked again, not rerouted") {
  auto driver = driver_of({"sim-a", "sim-b"});
  driver.admit({payment("P1", "sim-a")}, false, at(0));
  driver.paid("P1", "sim-a", said("P1", "sim-a", "UNKNOWN"), at(10));
  driver.tick(at(510));  // the query leaves 510 ms after the pay request
  auto actions = driver.queried("P1", "sim-a", said("P1", "sim-a", "NOT_FOUND"), at(520));
  CHECK(actions.empty());  // neither sent elsewhere nor closed
  // Asked again once the settle time (10 s after the pay request) is up.
  CHECK(driver.tick(at(9'999)).empty());
  actions = driver.tick(at(10'000));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
  // A NOT_FOUND now is believed: the payment goes to the other channel.
  actions = driver.queried("P1", "sim-a", said("P1", "sim-a", "NOT_FOUND"), at(10'010));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_route});
  CHECK(actions[0].channel_id == "sim-b");
}

TEST_CASE("driver: a payment that names its channel only ever goes there") {
  auto driver = driver_of({"sim-a", "sim-b"});
  auto named = payment("P1", "sim-a");
  named.order.channel_id = "sim-a";
  driver.admit({named}, false, at(0));
  auto actions = driver.paid("P1", "sim-a", said("P1", "sim-a", "REFUSED"), at(5));
  CHECK(actions.empty());  // refused everywhere it may go: routed again later
  actions = driver.tick(at(5 + 1000));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::pay});
  CHECK(actions[0].channel_id == "sim-a");
}

TEST_CASE(
  "driver: an expired payment no channel holds is closed, never sent, though a channel is free") {
  auto driver = driver_of({"sim-a"});
  SECTION("new, with the channel chosen at acceptance") {
    auto actions = driver.admit({payment("P2", "sim-a", 60, -120'000)}, false, at(0));
    REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
    CHECK(actions[0].result.status == payment_status::closed);
    CHECK(actions[0].result.source == result_source::query);
  }
  SECTION("read back after a stop, never routed") {
    auto actions = driver.admit({payment("P2", "", 60, -120'000)}, true, at(0));
    REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
    CHECK(actions[0].result.status == payment_status::closed);
  }
}

TEST_CASE("driver: an ACCEPTED payment is not closed at expiry: the channel has it") {
  auto driver = driver_of({"sim-a"});
  driver.admit({payment("P1", "sim-a", 60)}, false, at(0));
  driver.paid("P1", "sim-a", said("P1", "sim-a", "ACCEPTED"), at(10));
  auto actions = driver.tick(at(10 + 3000));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
  actions = driver.queried("P1", "sim-a", said("P1", "sim-a", "ACCEPTED"), at(120'000));
  CHECK(actions.empty());  // asked again later, never closed
}

TEST_CASE(
  "driver: a NOT_FOUND from a channel that said it holds the payment is reported, not believed") {
  auto driver = driver_of({"sim-a", "sim-b"});
  driver.admit({payment("P1", "sim-a", 60)}, false, at(0));
  // ACCEPTED: remembered, and written for a restart (no answer awaited).
  auto actions = driver.paid("P1", "sim-a", said("P1", "sim-a", "ACCEPTED"), at(10));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_held});
  CHECK(actions[0].channel_id == "sim-a");
  CHECK(actions[0].op == 0);
  // Past the settle time and past expiry, a lagging replica says NOT_FOUND.
  auto query = driver.tick(at(10 + 3000));
  REQUIRE(kinds(query) == std::vector<kind>{kind::query});
  actions = driver.queried("P1", "sim-a", said("P1", "sim-a", "NOT_FOUND"), at(120'000));
  // Reported; neither sent to sim-b nor closed: asked of sim-a again.
  REQUIRE(kinds(actions) == std::vector<kind>{kind::contradiction});
  CHECK(actions[0].channel_id == "sim-a");
  CHECK(driver.tick(at(120'000 + 2999)).empty());
  query = driver.tick(at(120'000 + 6000));
  REQUIRE(kinds(query) == std::vector<kind>{kind::query});
  CHECK(query[0].channel_id == "sim-a");
  // ACCEPTED again is no news: nothing more to write.
  CHECK(driver.queried("P1", "sim-a", said("P1", "sim-a", "ACCEPTED"), at(126'010)).empty());
  query = driver.tick(at(200'000));
  REQUIRE(kinds(query) == std::vector<kind>{kind::query});
  actions = driver.queried("P1", "sim-a", said("P1", "sim-a", "SUCCEEDED"), at(200'010));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
  CHECK(actions[0].result.status == payment_status::succeeded);
  CHECK(actions[0].result.channel_id == "sim-a");
}

TEST_CASE("driver: a payment read back held by its channel is not rerouted by a NOT_FOUND") {
  auto driver = driver_of({"sim-a", "sim-b"});
  auto held = payment("P1", "sim-a", 60, -120'000);
  held.held = true;
  auto actions = driver.admit({held}, true, at(0));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
  actions = driver.queried("P1", "sim-a", said("P1", "sim-a", "NOT_FOUND"), at(20'000));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::contradiction});
  // Asked again, however late, and never closed by that answer.
  auto query = driver.tick(at(40'000));
  REQUIRE(kinds(query) == std::vector<kind>{kind::query});
  actions = driver.queried("P1", "sim-a", said("P1", "sim-a", "NOT_FOUND"), at(40'010));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::contradiction});
}

TEST_CASE("driver: a payment read back not held, past the settle time, is closed by a NOT_FOUND") {
  auto driver = driver_of({"sim-a", "sim-b"});
  auto unheld = payment("P2", "sim-a", 60, -120'000);
  REQUIRE(kinds(driver.admit({unheld}, true, at(0))) == std::vector<kind>{kind::query});
  // Asked before the settle time: asked again once it is up.
  CHECK(driver.queried("P2", "sim-a", said("P2", "sim-a", "NOT_FOUND"), at(10)).empty());
  REQUIRE(kinds(driver.tick(at(10'000))) == std::vector<kind>{kind::query});
  auto actions = driver.queried("P2", "sim-a", said("P2", "sim-a", "NOT_FOUND"), at(10'010));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
  CHECK(actions[0].result.status == payment_status::closed);
}

TEST_CASE("driver: a result the store could not write is tried again, the same way") {
  auto driver = driver_of({"sim-a"});
  SECTION("a CLOSED result, never routed: routed again, which closes it again") {
    driver.admit({payment("P3", "", 60, -120'000)}, true, at(0));
    CHECK(driver.result_failed("P3", at(1)).empty());
    auto actions = driver.tick(at(1 + 1000));
    REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
    CHECK(actions[0].result.status == payment_status::closed);
  }
  SECTION("a channel's answer: asked of that channel again, never paid twice") {
    driver.admit({payment("P4", "sim-a")}, false, at(0));
    driver.paid("P4", "sim-a", said("P4", "sim-a", "SUCCEEDED"), at(5));
    CHECK(driver.result_failed("P4", at(6)).empty());
    auto actions = driver.tick(at(6 + 1000));
    REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
    actions = driver.queried("P4", "sim-a", said("P4", "sim-a", "SUCCEEDED"), at(1010));
    REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
    CHECK(actions[0].result.source == result_source::query);
  }
}

TEST_CASE("driver: a resumed payment with a route is asked before anything else") {
  auto driver = driver_of({"sim-a", "sim-b"});
  auto actions = driver.admit({payment("P1", "sim-b"), payment("P2", "")}, true, at(0));
  REQUIRE(actions.size() == 2);
  CHECK(actions[0].what == kind::query);
  CHECK(actions[0].channel_id == "sim-b");
  CHECK(actions[1].what == kind::record_route);
  CHECK(actions[1].pay_id == "P2");
}

TEST_CASE("driver: no channel gets more requests outstanding than its limit") {
  auto driver = driver_of({"sim-a"}, 2);
  std::vector<payment_record> records;
  for (int i = 0; i < 5; ++i)
    records.push_back(payment("P" + std::to_string(i), "sim-a"));
  auto actions = driver.admit(records, false, at(0));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::pay, kind::pay});
  // A slot frees: the next one goes, oldest first.
  actions = driver.paid("P0", "sim-a", said("P0", "sim-a", "SUCCEEDED"), at(10));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result, kind::pay});
  CHECK(actions[1].pay_id == "P2");
}

TEST_CASE(
  "driver: beyond max_in_memory payments wait in the store and are read back as room frees") {
  auto driver = driver_of({"sim-a"}, 16, 4);
  std::vector<payment_record> records;
  for (int i = 0; i < 6; ++i)
    records.push_back(payment("P" + std::to_string(i), "sim-a"));
  driver.admit(records, false, at(0));
  CHECK(driver.driving() == 4);
  for (int i = 0; i < 4; ++i) {
    auto id = "P" + std::to_string(i);
    driver.paid(id, "sim-a", said(id, "sim-a", "SUCCEEDED"), at(10));
    driver.result_written(id);
  }
  auto actions = driver.tick(at(50));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::read_unfinished});
  CHECK(actions[0].from == "P4");  // the first one turned away
  CHECK(actions[0].limit == 2);
  CHECK(driver.tick(at(100)).empty());  // one read at a time
  actions = driver.unfinished_read({payment("P4", "sim-a"), payment("P5", "sim-a")}, 2, at(110));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query, kind::query});  // maybe sent: asked
  CHECK(driver.driving() == 2);
}

TEST_CASE("driver: payments turned away while a read is in flight are read later, not stranded") {
  auto driver = driver_of({"sim-a"}, 16, 4);
  std::vector<payment_record> records;
  for (int i = 0; i < 5; ++i)
    records.push_back(payment("P" + std::to_string(i), "sim-a"));
  driver.admit(records, false, at(0));  // P4 turned away
  for (int i = 0; i < 3; ++i) {
    auto id = "P" + std::to_string(i);
    driver.paid(id, "sim-a", said(id, "sim-a", "SUCCEEDED"), at(10));
    driver.result_written(id);
  }
  auto read = driver.tick(at(50));
  REQUIRE(kinds(read) == std::vector<kind>{kind::read_unfinished});
  CHECK(read[0].from == "P4");
  // While the read is out, memory fills and P8 is turned away; the read's
  // snapshot predates it: it finds only P4, which fits once P3 is done.
  driver.admit({payment("P5", "sim-a"), payment("P6", "sim-a"), payment("P7", "sim-a"),
                payment("P8", "sim-a")},
               false, at(60));
  CHECK(driver.driving() == 4);
  driver.paid("P3", "sim-a", said("P3", "sim-a", "SUCCEEDED"), at(65));
  driver.result_written("P3");
  driver.unfinished_read({payment("P4", "sim-a")}, read[0].limit, at(70));
  CHECK(driver.driving() == 4);
  // Memory drains: P8 is read in, not left in the store until a restart.
  for (auto id : {"P4", "P5", "P6"}) {
    driver.paid(id, "sim-a", said(id, "sim-a", "SUCCEEDED"), at(80));
    driver.result_written(id);
  }
  read = driver.tick(at(100));
  REQUIRE(kinds(read) == std::vector<kind>{kind::read_unfinished});
  CHECK(read[0].from == "P8");
  auto actions = driver.unfinished_read({payment("P8", "sim-a")}, read[0].limit, at(110));
  CHECK(kinds(actions) == std::vector<kind>{kind::query});
}

TEST_CASE("driver: a payment settled by a notification is driven no more, unless busy") {
  auto driver = driver_of({"sim-a"});
  driver.admit({payment("P1", "sim-a")}, false, at(0));
  driver.paid("P1", "sim-a", said("P1", "sim-a", "ACCEPTED"), at(10));
  driver.settled("P1");
  CHECK(driver.driving() == 0);
  CHECK(driver.tick(at(10'000)).empty());
  driver.admit({payment("P2", "sim-a")}, false, at(0));
  driver.settled("P2");  // its pay request is out: its answer decides
  CHECK(driver.driving() == 1);
}

TEST_CASE("driver: a payment sent to a channel no longer configured is reported, and waits") {
  auto driver = driver_of({"sim-a"});
  auto actions = driver.admit({payment("P1", "sim-gone")}, true, at(0));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::unknown_channel});
  CHECK(actions[0].channel_id == "sim-gone");
  CHECK(driver.tick(at(29'999)).empty());
  CHECK(kinds(driver.tick(at(30'000))) == std::vector<kind>{kind::unknown_channel});
}

TEST_CASE(
  "driver: a pay request unanswered by its deadline is UNKNOWN, and its late answer ignored") {
  auto driver = driver_of({"sim-a", "sim-b"});
  auto actions = driver.admit({payment("P1", "sim-a")}, false, at(0));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::pay});
  auto late_op = actions[0].op;
  CHECK(driver.tick(at(59'999)).empty());
  // At the deadline the request is taken as unanswered: UNKNOWN, so P1 is
  // asked of sim-a (after unknown_query_ms), never sent to sim-b.
  CHECK(driver.tick(at(60'000)).empty());
  actions = driver.tick(at(60'500));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
  CHECK(actions[0].channel_id == "sim-a");
  // The pay request's answer, had it come now, changes nothing.
  CHECK(driver.inner.paid("P1", late_op, said("P1", "sim-a", "SUCCEEDED"), at(60'600)).empty());
  actions = driver.queried("P1", "sim-a", said("P1", "sim-a", "SUCCEEDED"), at(60'700));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
}

TEST_CASE("driver: a write the store never answers is tried again after its deadline") {
  auto driver = driver_of({"sim-a"});
  driver.admit({payment("P1", "sim-a")}, false, at(0));
  auto actions = driver.paid("P1", "sim-a", said("P1", "sim-a", "SUCCEEDED"), at(10));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_result});
  auto first = actions[0].op;
  CHECK(driver.tick(at(10 + 29'999)).empty());
  CHECK(driver.tick(at(10 + 30'000)).empty());  // failed: tried again after route_retry_ms
  actions = driver.tick(at(10 + 31'000));       // asked again of the channel that said it
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
  // The first write's answer, late, is stale.
  driver.inner.result_written("P1", first);
  CHECK(driver.driving() == 1);
}

TEST_CASE(
  "driver: a channel the operator disabled gets no new payments, and still answers for its own") {
  auto driver = driver_of({"sim-a", "sim-b"});
  driver.admit({payment("P0", "sim-a")}, false, at(0));  // sent before the switch
  driver.inner.steer({{"sim-a", 1, 16, 10'000, false}}, false);
  // Routed to sim-a at acceptance, never sent: it goes to sim-b instead, its route written first.
  auto actions = driver.admit({payment("P1", "sim-a")}, false, at(10));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_route});
  CHECK(actions[0].channel_id == "sim-b");
  for (int i = 2; i < 12; ++i) {  // fewer than sim-b's 16 slots
    auto more = driver.admit({payment("P" + std::to_string(i), "")}, false, at(10));
    REQUIRE(kinds(more) == std::vector<kind>{kind::record_route});
    CHECK(more[0].channel_id == "sim-b");
  }
  // What sim-a holds is still asked of sim-a.
  CHECK(driver.paid("P0", "sim-a", said("P0", "sim-a", "UNKNOWN"), at(20)).empty());
  actions = driver.tick(at(20 + 500));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
  CHECK(actions[0].channel_id == "sim-a");
}

TEST_CASE("driver: weight 0 takes a channel out of routing, weights set live share the rest") {
  auto driver = driver_of({"sim-a", "sim-b"});
  driver.inner.steer({{"sim-a", 0, 16, 10'000, true}, {"sim-b", 5, 16, 10'000, true}}, false);
  for (int i = 0; i < 15; ++i) {  // fewer than sim-b's 16 slots
    auto actions = driver.admit({payment("P" + std::to_string(i), "")}, false, at(0));
    REQUIRE(kinds(actions) == std::vector<kind>{kind::record_route});
    CHECK(actions[0].channel_id == "sim-b");
  }
}

TEST_CASE("driver: a payment naming a disabled channel waits for it, never goes elsewhere") {
  auto driver = driver_of({"sim-a", "sim-b"});
  driver.inner.steer({{"sim-a", 1, 16, 10'000, false}}, false);
  auto named = payment("P1", "");
  named.order.channel_id = "sim-a";
  CHECK(driver.admit({named}, false, at(0)).empty());
  CHECK(driver.tick(at(2000)).empty());
  driver.inner.steer({{"sim-a", 1, 16, 10'000, true}}, false);
  auto actions = driver.tick(at(4000));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_route});
  CHECK(actions[0].channel_id == "sim-a");
}

TEST_CASE("driver: paused order repair holds queries of unknown outcomes until it resumes") {
  auto driver = driver_of({"sim-a"});
  driver.admit({payment("P1", "sim-a")}, false, at(0));
  driver.inner.steer({}, true);
  CHECK(driver.paid("P1", "sim-a", said("P1", "sim-a", "UNKNOWN"), at(10)).empty());
  CHECK(driver.tick(at(10 + 500)).empty());     // due, but paused
  CHECK(driver.tick(at(10 + 60'000)).empty());  // still paused: no query, no close
  CHECK(driver.driving() == 1);
  driver.inner.steer({}, false);
  auto actions = driver.tick(at(10 + 62'000));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
  CHECK(actions[0].channel_id == "sim-a");
}

TEST_CASE(
  "driver: a read of unfinished payments whose snapshot predates a result never brings that payment back") {
  // Simulation seed 994275: a payment was admitted as it was created, a read
  // of the store began, the payment was paid through sim-b and its result
  // written; the read's answer (its snapshot older) still held it unfinished
  // and routed to sim-a, and it went to sim-a again: paid twice.
  auto driver = driver_of({"sim-a", "sim-b"}, 16, 4);
  std::vector<payment_record> records;
  for (int i = 1; i <= 4; ++i)
    records.push_back(payment("P" + std::to_string(i), "sim-a"));
  driver.admit(records, false, at(0));
  // Memory full: it waits in the store.
  CHECK(driver.admit({payment("P9", "sim-a")}, false, at(0)).empty());
  for (const auto* id : {"P1", "P2"}) {
    driver.paid(id, "sim-a", said(id, "sim-a", "SUCCEEDED"), at(5));
    driver.result_written(id);
  }
  auto read = driver.tick(at(100));
  REQUIRE(kinds(read) == std::vector<kind>{kind::read_unfinished});
  REQUIRE(read[0].limit == 2);
  // While the read is in flight: P5 is created, paid through sim-b and written; P6, not in
  // memory, is made final by a notification.
  auto sent = driver.admit({payment("P5", "sim-b")}, false, at(101));
  REQUIRE(kinds(sent) == std::vector<kind>{kind::pay});
  driver.paid("P5", "sim-b", said("P5", "sim-b", "SUCCEEDED"), at(102));
  driver.result_written("P5");
  driver.settled("P6");
  // The read's snapshot was taken before all that: both still unfinished there.
  CHECK(
    driver.unfinished_read({payment("P5", "sim-a"), payment("P6", "sim-a")}, 2, at(150)).empty());
  CHECK(driver.driving() == 2);  // P3 and P4
}

TEST_CASE(
  "driver: a payment read back from the store has its route written again before it is sent") {
  auto driver = driver_of({"sim-a"});
  auto actions = driver.admit({payment("P1", "sim-a")}, true, at(0));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::query});
  // NOT_FOUND past the settle time: never taken, so it is routed again, to sim-a, the one
  // channel; the record it was read with may be stale, so the route is written first (the
  // store refuses it if the payment is final).
  CHECK(driver.queried("P1", "sim-a", said("P1", "sim-a", "NOT_FOUND"), at(5)).empty());
  // The settle time is up.
  REQUIRE(kinds(driver.tick(at(10'000))) == std::vector<kind>{kind::query});
  CHECK(driver.queried("P1", "sim-a", said("P1", "sim-a", "NOT_FOUND"), at(10'010)).empty());
  actions = driver.tick(at(12'000));
  REQUIRE(kinds(actions) == std::vector<kind>{kind::record_route});
  CHECK(actions[0].channel_id == "sim-a");
  CHECK(driver.route_recorded("P1", "sim-a", false, at(12'001)).empty());  // final already
  CHECK(driver.driving() == 0);
}
