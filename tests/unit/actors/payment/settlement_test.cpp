// The money rules of settlement, without RocksDB: each batch is settled
// against a snapshot taken from plain maps, and its changes are applied to
// those maps, as the local store would (tests/unit/storage holds the thin
// test that the store reads and applies the same values).

#include <map>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "actors/payment/settlement.hpp"

using namespace paybus;

namespace {

constexpr int64_t now_ms = 1763782205000;

/// The local store as plain maps.
struct memory_ledger {
  std::map<std::string, std::string> pay_ids;
  std::map<std::string, payment_record> orders;
  std::map<std::string, payment_result> results;
  std::set<std::string> conflicts;
  std::set<std::string> dispatch;
  std::vector<outbox_entry> outbox;
  std::vector<webhook_entry> webhooks;
  settlement_policy policy;

  store_snapshot snapshot(const snapshot_keys& keys) const {
    store_snapshot held;
    std::vector<std::string> order_ids = keys.order_ids;
    for (const auto& key : keys.idempotency_keys)
      if (auto hit = pay_ids.find(key); hit != pay_ids.end()) {
        held.pay_ids.emplace(key, hit->second);
        order_ids.push_back(hit->second);
      }
    for (const auto& id : order_ids)
      if (auto hit = orders.find(id); hit != orders.end())
        held.orders.emplace(id, hit->second);
    for (const auto& id : keys.result_ids)
      if (auto hit = results.find(id); hit != results.end())
        held.results.emplace(id, hit->second);
    for (const auto& key : keys.conflict_keys)
      if (conflicts.count(key) > 0)
        held.conflicts.insert(key);
    return held;
  }

  void apply(const store_changes& changes) {
    for (const auto& record : changes.orders)
      orders[record.pay_id] = record;
    for (const auto& [key, pay_id] : changes.idempotency)
      pay_ids[key] = pay_id;
    for (const auto& result : changes.results)
      results[result.pay_id] = result;
    for (const auto& pay_id : changes.results_removed)
      results.erase(pay_id);
    for (const auto& row : changes.outbox)
      outbox.push_back(row);
    for (const auto& id : changes.dispatch_added)
      dispatch.insert(id);
    for (const auto& id : changes.dispatch_removed)
      dispatch.erase(id);
    for (const auto& hook : changes.webhooks)
      webhooks.push_back(hook);
    for (const auto& late : changes.conflicts)
      conflicts.insert(conflict_key(late));
  }

  store_batch_answers commit(const store_batch& batch) {
    auto settled = settle(batch, snapshot(keys_to_read(batch)), policy, now_ms);
    apply(settled.changes);
    return settled.answers;
  }

  store_batch_answers create(std::vector<payment_record> records) {
    store_batch batch;
    batch.creates = std::move(records);
    return commit(batch);
  }

  store_batch_answers record(std::vector<payment_result> results) {
    store_batch batch;
    batch.results = std::move(results);
    return commit(batch);
  }

  store_batch_answers route(const std::string& pay_id, const std::string& channel,
                            bool held = false) {
    store_batch batch;
    batch.routes.push_back({pay_id, channel, held});
    return commit(batch);
  }

  std::vector<char> outbox_kinds() const {
    std::vector<char> kinds;
    for (const auto& row : outbox)
      kinds.push_back(row.kind);
    return kinds;
  }
};

payment_record order_of(const std::string& pay_id, const std::string& order_no,
                        int64_t amount = 500) {
  payment_record r;
  r.pay_id = pay_id;
  r.order.merchant_id = "demo";
  r.order.merchant_order_no = order_no;
  r.order.amount_minor = amount;
  r.order.currency = "CNY";
  r.order.subject = "coffee";
  r.instance_id = 1;
  r.created_at_ms = now_ms - 1200;
  r.routed_channel = "sim-a";  // chosen at acceptance, as the order shard does
  return r;
}

payment_result result_for(const std::string& pay_id, int64_t amount,
                          payment_status status = payment_status::succeeded) {
  payment_result r;
  r.pay_id = pay_id;
  r.status = status;
  r.channel_id = "sim-a";
  r.channel_txn_id = "T-" + pay_id;
  r.amount_minor = amount;
  r.finished_at_ms = 1763782201000;
  r.source = result_source::channel;
  return r;
}

}  // namespace

TEST_CASE("settlement: a new order writes its order, idempotency entry and outbox row") {
  memory_ledger ledger;
  auto answers = ledger.create({order_of("100", "A-1"), order_of("101", "A-2")});
  REQUIRE(answers.creates.size() == 2);
  CHECK(answers.creates[0].created);
  CHECK(answers.creates[1].created);
  CHECK(ledger.orders.size() == 2);
  CHECK(ledger.pay_ids.at(idempotency_key("demo", "A-2")) == "101");
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O', 'O'});
  CHECK(ledger.dispatch == std::set<std::string>{"100", "101"});
}

TEST_CASE("settlement: a repeated order, in the same batch or a later one, writes nothing") {
  memory_ledger ledger;
  auto answers = ledger.create({order_of("100", "A-1"), order_of("101", "A-1", 5)});
  CHECK(answers.creates[0].created);
  CHECK_FALSE(answers.creates[1].created);
  CHECK(answers.creates[1].record.pay_id == "100");
  CHECK(answers.creates[1].record.order.amount_minor == 500);
  auto later = settle(
    [] {
      store_batch batch;
      batch.creates = {order_of("102", "A-1")};
      return batch;
    }(),
    ledger.snapshot(keys_to_read([] {
      store_batch batch;
      batch.creates = {order_of("102", "A-1")};
      return batch;
    }())),
    {}, now_ms);
  CHECK_FALSE(later.answers.creates[0].created);
  CHECK(later.answers.creates[0].record.pay_id == "100");
  CHECK(later.changes.empty());
}

TEST_CASE("settlement: order first, then its result, joins with a results row and a webhook") {
  memory_ledger ledger;
  ledger.create({order_of("100", "A-1")});
  auto answers = ledger.record({result_for("100", 500)});
  CHECK(answers.results[0].changed);
  CHECK(answers.results[0].joined);
  CHECK(answers.join_latencies_ms == std::vector<int64_t>{1200});
  const auto& order = ledger.orders.at("100");
  CHECK(order.status == payment_status::succeeded);
  CHECK(order.channel_txn_id == "T-100");
  CHECK(order.finished_at_ms == 1763782201000);
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O', 'R'});
  CHECK(ledger.dispatch.empty());
  REQUIRE(ledger.webhooks.size() == 1);
  CHECK(ledger.webhooks[0].event_id == "evt_100");
  CHECK(ledger.webhooks[0].merchant_id == "demo");
  CHECK(ledger.webhooks[0].first_due_ms == now_ms);
}

TEST_CASE("settlement: an order and its result in one batch join, and leave no dispatch entry") {
  memory_ledger ledger;
  store_batch batch;
  batch.creates = {order_of("100", "A-1")};
  batch.results = {result_for("100", 500)};
  auto settled = settle(batch, ledger.snapshot(keys_to_read(batch)), {}, now_ms);
  CHECK(settled.answers.results[0].joined);
  REQUIRE(settled.changes.orders.size() == 1);  // each key once, with its last value
  CHECK(settled.changes.orders[0].status == payment_status::succeeded);
  CHECK(settled.changes.dispatch_added.empty());
  CHECK(settled.changes.dispatch_removed.empty());  // it never had one to delete
  ledger.apply(settled.changes);
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O', 'R'});
  CHECK(ledger.dispatch.empty());
}

TEST_CASE("settlement: a result before its order waits, and joins when the order arrives") {
  memory_ledger ledger;
  auto answers = ledger.record({result_for("100", 500)});
  CHECK(answers.results[0].changed);
  CHECK_FALSE(answers.results[0].joined);
  CHECK(ledger.outbox.empty());
  auto created = ledger.create({order_of("100", "A-1")});
  CHECK(created.creates[0].record.status == payment_status::succeeded);
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O', 'R'});
  CHECK(ledger.dispatch.empty());
  CHECK(ledger.webhooks.size() == 1);
}

TEST_CASE("settlement: a second, different result before the order is kept apart, not dropped") {
  memory_ledger ledger;
  ledger.record({result_for("100", 500)});
  CHECK(ledger.record({result_for("100", 500)}).conflicts.empty());  // the same again: nothing new
  auto elsewhere = result_for("100", 500);
  elsewhere.channel_id = "sim-b";
  elsewhere.channel_txn_id = "B-1";
  auto answers = ledger.record({elsewhere});
  REQUIRE(answers.conflicts.size() == 1);
  CHECK(answers.conflicts[0].what == result_conflict::against::waiting_result);
  CHECK(answers.conflicts[0].kept.channel_id == "sim-a");
  CHECK(answers.conflicts[0].late.channel_id == "sim-b");
  CHECK_FALSE(answers.results[0].changed);
  CHECK(ledger.record({elsewhere}).conflicts.empty());  // once
  auto created = ledger.create({order_of("100", "A-1")});
  CHECK(created.creates[0].record.status == payment_status::succeeded);
  CHECK(created.creates[0].record.channel_txn_id == "T-100");
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O', 'R'});
}

TEST_CASE("settlement: duplicates and later contradictions of a final result change nothing") {
  memory_ledger ledger;
  ledger.create({order_of("100", "A-1")});
  ledger.record({result_for("100", 500)});
  auto again
    = ledger.record({result_for("100", 500), result_for("100", 500, payment_status::failed)});
  CHECK_FALSE(again.results[0].changed);
  CHECK(again.results[0].joined);
  CHECK_FALSE(again.results[1].changed);
  CHECK(ledger.orders.at("100").status == payment_status::succeeded);
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O', 'R'});
  CHECK(ledger.webhooks.size() == 1);
}

TEST_CASE("settlement: a contradiction of a final result is kept apart once, never applied") {
  memory_ledger ledger;
  ledger.create({order_of("100", "A-1")});
  ledger.record({result_for("100", 500)});
  auto repeat = result_for("100", 500);
  repeat.source = result_source::notify;
  CHECK(ledger.record({repeat}).conflicts.empty());
  auto elsewhere = result_for("100", 500);
  elsewhere.channel_id = "sim-b";
  elsewhere.channel_txn_id = "B-1";
  auto answers = ledger.record({elsewhere, result_for("100", 500, payment_status::failed)});
  REQUIRE(answers.conflicts.size() == 2);
  CHECK(answers.conflicts[0].what == result_conflict::against::final_result);
  CHECK(answers.conflicts[0].kept.channel_id == "sim-a");
  CHECK(answers.conflicts[0].late.channel_id == "sim-b");
  CHECK(answers.conflicts[1].late.status == payment_status::failed);
  CHECK(ledger.record({elsewhere}).conflicts.empty());
  auto other_txn = result_for("100", 500);
  other_txn.channel_txn_id = "T-other";
  CHECK(ledger.record({other_txn}).conflicts.size() == 1);
  // The same conflict twice in one batch is kept once.
  auto twice = result_for("100", 7);
  CHECK(ledger.record({twice, twice}).conflicts.size() == 1);
  CHECK(ledger.orders.at("100").status == payment_status::succeeded);
  CHECK(ledger.orders.at("100").channel_txn_id == "T-100");
  CHECK(ledger.conflicts.size() == 4);
}

TEST_CASE("settlement: a result at another amount is kept flagged, never joined, never routed") {
  memory_ledger ledger;
  ledger.create({order_of("100", "A-1")});
  auto answers = ledger.record({result_for("100", 499)});
  CHECK(answers.flagged == 1);
  CHECK(answers.results[0].result.flagged);
  CHECK_FALSE(answers.results[0].joined);
  CHECK(ledger.orders.at("100").status == payment_status::processing);
  CHECK(ledger.results.at("100").flagged);
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O'});
  auto later = ledger.record({result_for("100", 500)});
  CHECK_FALSE(later.results[0].changed);
  CHECK(later.results[0].result.flagged);
  REQUIRE(later.conflicts.size() == 1);
  CHECK(later.conflicts[0].what == result_conflict::against::flagged_result);
  CHECK(later.conflicts[0].kept.amount_minor == 499);
  CHECK(ledger.results.at("100").amount_minor == 499);
  CHECK(ledger.record({result_for("100", 499)}).conflicts.empty());
  CHECK(ledger.route("100", "sim-b").routes == std::vector<bool>{false});
  CHECK(ledger.orders.at("100").routed_channel == "sim-a");
  CHECK(ledger.webhooks.empty());
}

TEST_CASE(
  "settlement: a result before its order from a channel it is not routed to is kept apart, never applied") {
  memory_ledger ledger;
  auto early = result_for("100", 500);
  early.channel_id = "sim-b";  // a signed notification for a pay_id yet to come
  early.source = result_source::notify;
  ledger.record({early});
  auto answers = ledger.create({order_of("100", "A-1")});  // routed to sim-a
  REQUIRE(answers.creates.size() == 1);
  CHECK(answers.creates[0].created);
  CHECK(answers.creates[0].record.status == payment_status::processing);
  REQUIRE(answers.conflicts.size() == 1);
  CHECK(answers.conflicts[0].what == result_conflict::against::route);
  CHECK(answers.conflicts[0].late.channel_id == "sim-b");
  CHECK(answers.conflicts[0].kept.channel_id == "sim-a");
  CHECK(ledger.conflicts.size() == 1);
  CHECK(ledger.results.count("100") == 0);   // no longer waiting
  CHECK(ledger.dispatch.count("100") == 1);  // driven: sim-a is asked
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O'});
  CHECK(ledger.webhooks.empty());
  // sim-a's own answer joins it.
  auto paid = ledger.record({result_for("100", 500)});
  CHECK(paid.results[0].joined);
  CHECK(ledger.orders.at("100").status == payment_status::succeeded);
}

TEST_CASE("settlement: a result before an order no channel was chosen for is kept apart") {
  memory_ledger ledger;
  ledger.record({result_for("100", 500)});
  auto unrouted = order_of("100", "A-1");
  unrouted.routed_channel.clear();
  auto answers = ledger.create({unrouted});
  CHECK(answers.creates[0].record.status == payment_status::processing);
  CHECK(answers.conflicts.size() == 1);
}

TEST_CASE("settlement: a result before its order at another amount is flagged when it comes") {
  memory_ledger ledger;
  ledger.record({result_for("100", 499)});
  auto answers = ledger.create({order_of("100", "A-1")});
  CHECK(answers.creates[0].record.status == payment_status::processing);
  CHECK(answers.flagged == 1);
  CHECK(ledger.results.at("100").flagged);
  CHECK(ledger.results.at("100").amount_minor == 499);
  CHECK_FALSE(ledger.record({result_for("100", 500)}).results[0].joined);
  CHECK(ledger.orders.at("100").status == payment_status::processing);
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O'});
}

TEST_CASE("settlement: a route is recorded while processing, refused once final or unknown") {
  memory_ledger ledger;
  ledger.create({order_of("100", "A-1")});
  CHECK(ledger.route("100", "sim-a").routes == std::vector<bool>{true});
  CHECK(ledger.orders.at("100").routed_channel == "sim-a");
  ledger.record({result_for("100", 500)});
  CHECK(ledger.route("100", "sim-b").routes == std::vector<bool>{false});
  CHECK(ledger.orders.at("100").routed_channel == "sim-a");
  CHECK(ledger.route("999", "sim-a").routes == std::vector<bool>{false});
}

TEST_CASE(
  "settlement: a channel's word that it holds a payment is kept with the order, for that channel only") {
  memory_ledger ledger;
  ledger.create({order_of("100", "A-1")});
  ledger.route("100", "sim-a");
  // Another channel cannot hold a payment routed to sim-a.
  CHECK(ledger.route("100", "sim-b", true).routes == std::vector<bool>{false});
  CHECK_FALSE(ledger.orders.at("100").held);
  CHECK(ledger.route("100", "sim-a", true).routes == std::vector<bool>{true});
  CHECK(ledger.orders.at("100").held);
  CHECK(ledger.orders.at("100").routed_channel == "sim-a");
  // Once final, nothing more is written.
  ledger.record({result_for("100", 500)});
  CHECK(ledger.route("100", "sim-a", true).routes == std::vector<bool>{false});
}

TEST_CASE("settlement: a result from a channel the payment is not routed to is kept apart") {
  memory_ledger ledger;
  auto routed = order_of("100", "A-1");
  routed.routed_channel = "sim-a";
  ledger.create({routed});
  auto elsewhere = result_for("100", 500);
  elsewhere.channel_id = "sim-b";
  auto answers = ledger.record({elsewhere});
  CHECK_FALSE(answers.results[0].changed);
  REQUIRE(answers.conflicts.size() == 1);
  CHECK(answers.conflicts[0].what == result_conflict::against::route);
  CHECK(answers.conflicts[0].kept.channel_id == "sim-a");
  CHECK(ledger.orders.at("100").status == payment_status::processing);
  CHECK(ledger.results.count("100") == 0);
  // Its own channel's answer still joins.
  CHECK(ledger.record({result_for("100", 500)}).results[0].joined);
}

TEST_CASE("settlement: a webhook entry only for payments with a target") {
  memory_ledger ledger;
  ledger.policy.default_webhook_merchants = std::set<std::string>{"shop"};
  auto of = [](std::string pay_id, std::string merchant, std::string notify_url) {
    auto r = order_of(pay_id, "A-" + pay_id);
    r.order.merchant_id = std::move(merchant);
    r.order.notify_url = std::move(notify_url);
    return r;
  };
  ledger.create(
    {of("100", "demo", ""), of("101", "demo", "http://127.0.0.1:1/hook"), of("102", "shop", "")});
  ledger.record({result_for("103", 500)});
  CHECK(ledger.create({of("103", "demo", "")}).creates[0].record.status
        == payment_status::succeeded);
  ledger.record({result_for("100", 500), result_for("101", 500), result_for("102", 500)});
  std::set<std::string> notified;
  for (const auto& entry : ledger.webhooks)
    notified.insert(entry.pay_id);
  CHECK(notified == std::set<std::string>{"101", "102"});
  // Every payment joined all the same: a results row for each of the four.
  CHECK(ledger.outbox_kinds() == std::vector<char>{'O', 'O', 'O', 'O', 'R', 'R', 'R', 'R'});
}

TEST_CASE("settlement: nonces ride along unchanged, and an empty batch changes nothing") {
  memory_ledger ledger;
  store_batch batch;
  auto settled = settle(batch, ledger.snapshot(keys_to_read(batch)), {}, now_ms);
  CHECK(settled.changes.empty());
  batch.nonces = {{"demo", "nonce-aaaaaaaaaaaa", 5000}};
  settled = settle(batch, ledger.snapshot(keys_to_read(batch)), {}, now_ms);
  REQUIRE(settled.changes.nonces.size() == 1);
  CHECK(settled.changes.nonces[0].nonce == "nonce-aaaaaaaaaaaa");
}

TEST_CASE("settlement: contradicts tells a repeat from another answer") {
  auto kept = result_for("100", 500);
  auto same = kept;
  same.source = result_source::query;
  CHECK_FALSE(contradicts(kept, same));
  auto no_txn = kept;
  no_txn.channel_txn_id.clear();  // a query that carries no transaction id
  CHECK_FALSE(contradicts(kept, no_txn));
  auto other = kept;
  other.channel_txn_id = "T-2";
  CHECK(contradicts(kept, other));
  other = kept;
  other.amount_minor = 1;
  CHECK(contradicts(kept, other));
  other = kept;
  other.status = payment_status::failed;
  CHECK(contradicts(kept, other));
}

TEST_CASE(
  "settlement: the admission rule: created once, same body existing, any difference conflict") {
  payment_order stored;
  stored.merchant_id = "demo";
  stored.merchant_order_no = "A";
  stored.amount_minor = 1;
  stored.currency = "CNY";
  auto same = stored;
  CHECK(decide_admission(true, stored, same) == admission::created);
  CHECK(decide_admission(false, stored, same) == admission::existing);
  for (int field = 0; field < 5; ++field) {
    auto other = stored;
    switch (field) {
      case 0:
        other.amount_minor = 2;
        break;
      case 1:
        other.currency = "USD";
        break;
      case 2:
        other.subject = "x";
        break;
      case 3:
        other.channel_id = "sim-a";
        break;
      case 4:
        other.expire_seconds = 60;
        break;
    }
    CHECK(decide_admission(false, stored, other) == admission::conflict);
  }
}

TEST_CASE("settlement: a repeated create is answered existing, or conflict when its body differs") {
  memory_ledger ledger;
  auto first = order_of("100", "A-1");
  auto other_amount = order_of("101", "A-1", 7);
  auto answers = ledger.create({first, order_of("102", "A-1"), other_amount});
  CHECK(answers.creates[0].outcome == admission::created);
  CHECK(answers.creates[1].outcome == admission::existing);  // same body, another pay_id issued
  CHECK(answers.creates[2].outcome == admission::conflict);
  CHECK(answers.creates[2].record.pay_id == "100");
  auto later = ledger.create({order_of("103", "A-1"), other_amount});
  CHECK(later.creates[0].outcome == admission::existing);
  CHECK(later.creates[1].outcome == admission::conflict);
  CHECK(ledger.orders.size() == 1);
}
