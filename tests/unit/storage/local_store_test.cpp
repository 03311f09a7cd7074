#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>

#include <catch2/catch.hpp>

#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "actors/store/commit.hpp"
#include "storage/local/local_store.hpp"
#include "storage/database/pg_database.hpp"
#include "storage/local/record_codec.hpp"

using namespace paybus;

namespace {

struct temp_dir {
  std::string path = (std::filesystem::temp_directory_path()
                      / ("paybus-store-test-" + crypto::random_token(8)))
                       .string();
  ~temp_dir() {
    std::filesystem::remove_all(path);
  }
};

payment_record record(const std::string& pay_id, const std::string& order_no,
                      int64_t amount = 100) {
  payment_record r;
  r.pay_id = pay_id;
  r.order.merchant_id = "demo";
  r.order.merchant_order_no = order_no;
  r.order.amount_minor = amount;
  r.order.currency = "CNY";
  r.order.subject = "coffee";
  r.instance_id = 1;
  r.created_at_ms = 1763782200123;
  return r;
}

std::unique_ptr<local_store> open_store(const std::string& path) {
  std::string error;
  auto store = local_store::open(path, local_store_options{}, error);
  INFO(error);
  REQUIRE(store);
  return store;
}

} // namespace

TEST_CASE("record codec round-trips and refuses damage") {
  auto original = record("176378220012300001000000", "A-1", 1999);
  original.order.notify_url = "http://x/n";
  original.channel_txn_id = "T-9";
  original.finished_at_ms = 42;
  auto bytes = codec::encode_record(original);
  payment_record decoded;
  REQUIRE(codec::decode_record(bytes, decoded));
  CHECK(decoded.pay_id == original.pay_id);
  CHECK(same_body(decoded.order, original.order));
  CHECK(decoded.created_at_ms == original.created_at_ms);
  CHECK(decoded.channel_txn_id == "T-9");
  CHECK(decoded.finished_at_ms == 42);
  CHECK_FALSE(codec::decode_record(bytes.substr(0, bytes.size() - 1), decoded));
  CHECK_FALSE(codec::decode_record(bytes + "x", decoded));
  CHECK_FALSE(codec::decode_record("", decoded));
  bytes[0] = 9;
  CHECK_FALSE(codec::decode_record(bytes, decoded));
}

TEST_CASE("a commit writes order, idempotency entry and outbox entry together") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> results;
  REQUIRE(commit(*store, {record("100", "A-1"), record("101", "A-2")},
                        {nonce_accepted{"demo", "nonce-aaaaaaaaaaaa", 5000}}, results)
            .ok());
  REQUIRE(results.size() == 2);
  CHECK(results[0].created);
  CHECK(results[1].created);
  auto counts = store->count_keys();
  CHECK(counts["orders"] == 2);
  CHECK(counts["idem"] == 2);
  CHECK(counts["outbox"] == 2);
  CHECK(counts["nonces"] == 1);
  CHECK(store->outbox_size() == 2);
  std::optional<payment_record> found;
  REQUIRE(store->find("demo", "A-2", found).ok());
  REQUIRE(found);
  CHECK(found->pay_id == "101");
  REQUIRE(store->get("100", found).ok());
  CHECK(found->order.merchant_order_no == "A-1");
  REQUIRE(store->get("999", found).ok());
  CHECK_FALSE(found);
}

TEST_CASE("a repeated order, in the same batch or a later one, is not written again") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> results;
  REQUIRE(commit(*store, {record("100", "A-1"), record("101", "A-1", 5)}, {}, results).ok());
  CHECK(results[0].created);
  CHECK_FALSE(results[1].created);
  CHECK(results[1].record.pay_id == "100");
  CHECK(results[1].record.order.amount_minor == 100);
  REQUIRE(commit(*store, {record("102", "A-1")}, {}, results).ok());
  CHECK_FALSE(results[0].created);
  CHECK(results[0].record.pay_id == "100");
  auto counts = store->count_keys();
  CHECK(counts["orders"] == 1);
  CHECK(counts["idem"] == 1);
  CHECK(counts["outbox"] == 1);
}

TEST_CASE("the outbox is read in commit order, trimmed, and survives a reopen") {
  temp_dir dir;
  {
    auto store = open_store(dir.path);
    std::vector<order_stored> results;
    for (int i = 0; i < 5; ++i)
      REQUIRE(commit(*store, {record(std::to_string(200 + i), "B-" + std::to_string(i))}, {}, results).ok());
    std::vector<outbox_entry> entries;
    REQUIRE(store->read_outbox(0, 3, entries).ok());
    REQUIRE(entries.size() == 3);
    CHECK(entries[0].pay_id == "200");
    CHECK(entries[2].pay_id == "202");
    CHECK(entries[0].sequence < entries[1].sequence);
    REQUIRE(store->remove_outbox(entries).ok());
    CHECK(store->outbox_size() == 2);
  }
  auto store = open_store(dir.path);
  CHECK(store->outbox_size() == 2);
  std::vector<outbox_entry> entries;
  REQUIRE(store->read_outbox(0, 10, entries).ok());
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].pay_id == "203");
  // New entries continue after the old ones.
  std::vector<order_stored> results;
  REQUIRE(commit(*store, {record("300", "C-1")}, {}, results).ok());
  REQUIRE(store->read_outbox(0, 10, entries).ok());
  REQUIRE(entries.size() == 3);
  CHECK(entries[2].pay_id == "300");
  CHECK(entries[2].sequence > entries[1].sequence);
  CHECK(store->last_pay_id() == "300");
}

TEST_CASE("nonces are remembered for their retention, across a reopen") {
  temp_dir dir;
  {
    auto store = open_store(dir.path);
    std::vector<order_stored> results;
    REQUIRE(commit(*store, {}, {{"demo", "nonce-aaaaaaaaaaaa", 1'000'000}}, results).ok());
  }
  auto store = open_store(dir.path);  // retention 600 s
  CHECK(store->nonce_seen("demo", "nonce-aaaaaaaaaaaa", 1'000'000) == std::optional<bool>{true});
  CHECK(store->nonce_seen("demo", "nonce-aaaaaaaaaaaa", 1'600'000) == std::optional<bool>{true});
  CHECK(store->nonce_seen("demo", "nonce-aaaaaaaaaaaa", 1'600'001) == std::optional<bool>{false});
  CHECK(store->nonce_seen("other", "nonce-aaaaaaaaaaaa", 1'000'000) == std::optional<bool>{false});
  CHECK(store->nonce_seen("demo", "nonce-bbbbbbbbbbbb", 1'000'000) == std::optional<bool>{false});
}

TEST_CASE("compaction drops expired nonces and keeps fresh ones") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> results;
  int64_t now = 1'800'000'000'000;  // far beyond any test clock: fresh
  REQUIRE(commit(*store, {}, {{"demo", "old-nonce-aaaaaaaa", 1000}, {"demo", "new-nonce-aaaaaaaa", now}}, results).ok());
  REQUIRE(store->compact_nonces().ok());
  CHECK(store->count_keys()["nonces"] == 1);
  CHECK(store->nonce_seen("demo", "new-nonce-aaaaaaaa", now) == std::optional<bool>{true});
}

TEST_CASE("meta values persist, and a second open of a held store is refused") {
  temp_dir dir;
  auto store = open_store(dir.path);
  REQUIRE(store->put_meta("instance_id", "7").ok());
  std::optional<std::string> value;
  REQUIRE(store->get_meta("instance_id", value).ok());
  CHECK(value == std::optional<std::string>{"7"});
  std::string error;
  CHECK_FALSE(local_store::open(dir.path, local_store_options{}, error));
  CHECK(error.find("held by another process") != std::string::npos);
}

namespace {

payment_result result_for(const std::string& pay_id, int64_t amount,
                          const std::string& status = "SUCCEEDED") {
  payment_result r;
  r.pay_id = pay_id;
  r.status = status;
  r.channel_id = "sim-a";
  r.channel_txn_id = "T-" + pay_id;
  r.amount_minor = amount;
  r.finished_at_ms = 1763782201000;
  r.source = "channel";
  return r;
}

store_batch_answers commit_results(local_store& store, std::vector<payment_result> results) {
  store_batch batch;
  batch.results = std::move(results);
  store_batch_answers answers;
  REQUIRE(commit(store, batch, answers).ok());
  return answers;
}

/// Every due webhook entry, up to `room` a merchant.
std::vector<webhook_entry> due_webhooks(local_store& store, size_t room = 10,
                                        int64_t now_ms = std::numeric_limits<int64_t>::max()) {
  std::vector<webhook_entry> due;
  std::optional<int64_t> next_due;
  REQUIRE(store.due_webhooks(now_ms, [=](const std::string&) { return room; }, due, next_due).ok());
  return due;
}

std::vector<char> outbox_kinds(local_store& store) {
  std::vector<outbox_entry> entries;
  REQUIRE(store.read_outbox(0, 100, entries).ok());
  std::vector<char> kinds;
  for (const auto& entry : entries)
    kinds.push_back(entry.kind);
  return kinds;
}

} // namespace

TEST_CASE("join: order first, then its result, in one batch with the results row") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {record("100", "A-1", 500)}, {}, created).ok());
  std::vector<payment_record> pending;
  REQUIRE(store->pending_dispatch(pending, 10).ok());
  CHECK(pending.size() == 1);
  auto answers = commit_results(*store, {result_for("100", 500)});
  CHECK(answers.results[0].changed);
  CHECK(answers.results[0].joined);
  std::optional<payment_record> order;
  REQUIRE(store->get("100", order).ok());
  CHECK(order->status == "SUCCEEDED");
  CHECK(order->channel_txn_id == "T-100");
  CHECK(order->finished_at_ms == 1763782201000);
  CHECK(outbox_kinds(*store) == std::vector<char>{'O', 'R'});
  REQUIRE(store->pending_dispatch(pending, 10).ok());
  CHECK(pending.empty());
}

TEST_CASE("join: a result before its order waits and joins when the order arrives") {
  temp_dir dir;
  auto store = open_store(dir.path);
  auto answers = commit_results(*store, {result_for("100", 500)});
  CHECK(answers.results[0].changed);
  CHECK_FALSE(answers.results[0].joined);
  CHECK(outbox_kinds(*store).empty());
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {record("100", "A-1", 500)}, {}, created).ok());
  CHECK(created[0].record.status == "SUCCEEDED");
  CHECK(outbox_kinds(*store) == std::vector<char>{'O', 'R'});
  std::vector<payment_record> pending;
  REQUIRE(store->pending_dispatch(pending, 10).ok());
  CHECK(pending.empty());
}

TEST_CASE("join: a second, different result before the order is kept apart, not dropped") {
  temp_dir dir;
  auto store = open_store(dir.path);
  commit_results(*store, {result_for("100", 500)});
  auto repeat = commit_results(*store, {result_for("100", 500)});
  CHECK(repeat.conflicts.empty());  // the same answer again: nothing new
  auto elsewhere = result_for("100", 500);
  elsewhere.channel_id = "sim-b";
  elsewhere.channel_txn_id = "B-1";
  auto answers = commit_results(*store, {elsewhere});
  REQUIRE(answers.conflicts.size() == 1);
  CHECK(answers.conflicts[0].what == result_conflict::against::waiting_result);
  CHECK(answers.conflicts[0].kept.channel_id == "sim-a");
  CHECK(answers.conflicts[0].late.channel_id == "sim-b");
  CHECK_FALSE(answers.results[0].changed);
  CHECK(commit_results(*store, {elsewhere}).conflicts.empty());  // once
  // The order joins the first result; the second stays apart.
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {record("100", "A-1", 500)}, {}, created).ok());
  CHECK(created[0].record.status == "SUCCEEDED");
  CHECK(created[0].record.channel_txn_id == "T-100");
  CHECK(outbox_kinds(*store) == std::vector<char>{'O', 'R'});
}

TEST_CASE("join: duplicates and later contradictions change nothing") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {record("100", "A-1", 500)}, {}, created).ok());
  commit_results(*store, {result_for("100", 500)});
  auto again = commit_results(*store, {result_for("100", 500), result_for("100", 500, "FAILED")});
  CHECK_FALSE(again.results[0].changed);
  CHECK_FALSE(again.results[1].changed);
  std::optional<payment_record> order;
  REQUIRE(store->get("100", order).ok());
  CHECK(order->status == "SUCCEEDED");
  CHECK(outbox_kinds(*store) == std::vector<char>{'O', 'R'});
}

TEST_CASE("join: a contradiction of a final result is kept apart, once, and never applied") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {record("100", "A-1", 500)}, {}, created).ok());
  commit_results(*store, {result_for("100", 500)});
  // Repeats of the answer kept (a duplicate notification, a query) contradict nothing.
  auto repeat = result_for("100", 500);
  repeat.source = "notify";
  CHECK(commit_results(*store, {repeat}).conflicts.empty());
  // The payment also paid through another channel, and a status the channel changed.
  auto elsewhere = result_for("100", 500);
  elsewhere.channel_id = "sim-b";
  elsewhere.channel_txn_id = "B-1";
  auto answers = commit_results(*store, {elsewhere, result_for("100", 500, "FAILED")});
  REQUIRE(answers.conflicts.size() == 2);
  CHECK(answers.conflicts[0].kept.channel_id == "sim-a");
  CHECK(answers.conflicts[0].late.channel_id == "sim-b");
  CHECK(answers.conflicts[1].late.status == "FAILED");
  CHECK(answers.conflicts[0].what == result_conflict::against::final_result);
  CHECK_FALSE(answers.results[0].changed);
  // The same contradiction again is not news; a damaged channel_txn_id or amount is.
  CHECK(commit_results(*store, {elsewhere}).conflicts.empty());
  auto other_txn = result_for("100", 500);
  other_txn.channel_txn_id = "T-other";
  CHECK(commit_results(*store, {other_txn}).conflicts.size() == 1);
  std::optional<payment_record> order;
  REQUIRE(store->get("100", order).ok());
  CHECK(order->status == "SUCCEEDED");
  CHECK(order->channel_txn_id == "T-100");
  CHECK(outbox_kinds(*store) == std::vector<char>{'O', 'R'});
  CHECK(store->count_keys()["conflicts"] == 3);
  // Kept across a reopen.
  store.reset();
  store = open_store(dir.path);
  CHECK(store->count_keys()["conflicts"] == 3);
}

TEST_CASE("join: a result whose amount differs is kept, flagged, never joined") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {record("100", "A-1", 500)}, {}, created).ok());
  auto answers = commit_results(*store, {result_for("100", 499)});
  CHECK(answers.flagged == 1);
  CHECK(answers.results[0].result.flagged);
  CHECK_FALSE(answers.results[0].joined);
  std::optional<payment_record> order;
  REQUIRE(store->get("100", order).ok());
  CHECK(order->status == "PROCESSING");
  std::optional<payment_result> kept;
  REQUIRE(store->get_result("100", kept).ok());
  REQUIRE(kept);
  CHECK(kept->flagged);
  CHECK(outbox_kinds(*store) == std::vector<char>{'O'});
  // A later answer at the order's amount (a query's, which carries none of its
  // own) does not clear the flag: which amount was paid is for people to settle.
  auto later = commit_results(*store, {result_for("100", 500)});
  CHECK_FALSE(later.results[0].changed);
  CHECK_FALSE(later.results[0].joined);
  CHECK(later.results[0].result.flagged);
  REQUIRE(later.conflicts.size() == 1);
  CHECK(later.conflicts[0].kept.amount_minor == 499);
  CHECK(later.conflicts[0].what == result_conflict::against::flagged_result);
  REQUIRE(store->get("100", order).ok());
  CHECK(order->status == "PROCESSING");
  REQUIRE(store->get_result("100", kept).ok());
  CHECK((kept->flagged && kept->amount_minor == 499));
  CHECK(outbox_kinds(*store) == std::vector<char>{'O'});
  // Its repeat is not news.
  CHECK(commit_results(*store, {result_for("100", 499)}).conflicts.empty());
  // The bus drives it no more: not resumed after a restart, not sent elsewhere.
  std::vector<payment_record> pending;
  REQUIRE(store->pending_dispatch(pending, 10).ok());
  CHECK(pending.empty());
  store_batch route;
  route.routes.push_back({"100", "sim-b"});
  store_batch_answers routed;
  REQUIRE(commit(*store, route, routed).ok());
  CHECK(routed.routes == std::vector<bool>{false});
  REQUIRE(store->get("100", order).ok());
  CHECK(order->routed_channel.empty());
}

TEST_CASE("join: a result before its order, at another amount, is flagged when the order comes") {
  temp_dir dir;
  auto store = open_store(dir.path);
  commit_results(*store, {result_for("100", 499)});
  std::vector<order_stored> created;
  store_batch batch;
  batch.creates = {record("100", "A-1", 500)};
  store_batch_answers answers;
  REQUIRE(commit(*store, batch, answers).ok());
  CHECK(answers.creates[0].record.status == "PROCESSING");
  CHECK(answers.flagged == 1);
  std::optional<payment_result> kept;
  REQUIRE(store->get_result("100", kept).ok());
  CHECK((kept && kept->flagged && kept->amount_minor == 499));
  // The channel's answer at the order's amount does not overwrite it.
  auto later = commit_results(*store, {result_for("100", 500)});
  CHECK_FALSE(later.results[0].joined);
  std::optional<payment_record> order;
  REQUIRE(store->get("100", order).ok());
  CHECK(order->status == "PROCESSING");
  CHECK(outbox_kinds(*store) == std::vector<char>{'O'});
}

TEST_CASE("join: without a list of merchants every final payment gets a webhook entry") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {record("100", "A-1", 500)}, {}, created).ok());
  commit_results(*store, {result_for("100", 500)});
  auto due = due_webhooks(*store);
  REQUIRE(due.size() == 1);
  CHECK(due[0].event_id == "evt_100");
  CHECK(due[0].merchant_id == "demo");
}

TEST_CASE("webhooks: one merchant's backlog never hides another's due entries") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  std::vector<payment_result> results;
  for (int i = 0; i < 300; ++i) {  // demo's, all due before shop's
    auto pay_id = std::to_string(1000 + i);
    REQUIRE(commit(*store, {record(pay_id, "A-" + pay_id, 500)}, {}, created).ok());
    results.push_back(result_for(pay_id, 500));
  }
  commit_results(*store, results);
  auto shop = record("2000", "S-1", 500);
  shop.order.merchant_id = "shop";
  REQUIRE(commit(*store, {shop}, {}, created).ok());
  commit_results(*store, {result_for("2000", 500)});

  std::vector<webhook_entry> due;
  std::optional<int64_t> next_due;
  auto room = [](const std::string& merchant) -> size_t { return merchant == "demo" ? 3 : 1; };
  REQUIRE(store->due_webhooks(std::numeric_limits<int64_t>::max(), room, due, next_due).ok());
  REQUIRE(due.size() == 4);
  CHECK(due[0].merchant_id == "demo");
  CHECK(due[0].pay_id == "1000");  // oldest first within a merchant
  CHECK(due[3].merchant_id == "shop");
  CHECK(due[3].pay_id == "2000");
  REQUIRE(next_due);  // demo's fourth is due already
  CHECK(*next_due <= unix_now_ms());

  // Nothing is due before the first entry's time; next_due says when.
  REQUIRE(store->due_webhooks(due[0].due_ms - 1, room, due, next_due).ok());
  CHECK(due.empty());
  REQUIRE(next_due);

  // A retry moves the entry back in its merchant's queue; a delivery removes it.
  auto first = due_webhooks(*store, 1).front();
  REQUIRE(store->reschedule_webhook(first, std::numeric_limits<int64_t>::max() - 1).ok());
  auto heads = due_webhooks(*store, 1, std::numeric_limits<int64_t>::max() - 2);
  REQUIRE(heads.size() == 2);
  CHECK(heads[0].pay_id == "1001");
  CHECK(store->webhook_backlog() == 301);
  for (const auto& entry : due_webhooks(*store, 1000))
    REQUIRE(store->finish_webhook(entry).ok());
  CHECK(due_webhooks(*store, 1000).empty());
  CHECK(store->webhook_backlog() == 0);
}

TEST_CASE("webhooks: a read seeks past the delivered head and still finds every entry put since") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  auto final_payment = [&](const std::string& pay_id, const std::string& merchant) {
    auto r = record(pay_id, "A-" + pay_id, 500);
    r.order.merchant_id = merchant;
    REQUIRE(commit(*store, {r}, {}, created).ok());
    commit_results(*store, {result_for(pay_id, 500)});
  };
  auto pay_ids = [&](int64_t now_ms) {
    std::vector<std::string> ids;
    for (const auto& entry : due_webhooks(*store, 10, now_ms))
      ids.push_back(entry.pay_id);
    return ids;
  };
  final_payment("100", "demo");
  final_payment("101", "demo");
  auto due = due_webhooks(*store);  // the first read goes through every queue
  REQUIRE(due.size() == 2);
  // demo's head is now a retry due far ahead; the other is delivered.
  int64_t far = unix_now_ms() + 3'600'000;
  REQUIRE(store->reschedule_webhook(due[0], far).ok());
  REQUIRE(store->finish_webhook(due[1]).ok());
  CHECK(pay_ids(unix_now_ms()).empty());
  // Put after that read, due before the head it found: found.
  final_payment("102", "demo");
  CHECK(pay_ids(unix_now_ms()) == std::vector<std::string>{"102"});
  // A merchant the reads have not met: found at once, not at the next walk.
  final_payment("200", "shop");
  CHECK(pay_ids(unix_now_ms()) == std::vector<std::string>{"102", "200"});
  // A queue emptied, then put to again.
  for (const auto& entry : due_webhooks(*store, 10, unix_now_ms()))
    REQUIRE(store->finish_webhook(entry).ok());
  CHECK(pay_ids(unix_now_ms()).empty());
  final_payment("201", "shop");
  CHECK(pay_ids(unix_now_ms()) == std::vector<std::string>{"201"});
  CHECK(pay_ids(far) == std::vector<std::string>{"100", "201"});
  CHECK(store->webhook_backlog() == 2);
}

TEST_CASE("webhooks: entries of the one-queue layout move to their merchant's queue at open") {
  temp_dir dir;
  {
    auto store = open_store(dir.path);
    std::vector<order_stored> created;
    auto shop = record("100", "S-1", 500);
    shop.order.merchant_id = "shop";
    REQUIRE(commit(*store, {shop}, {}, created).ok());
  }
  {
    // What an earlier build wrote: the due time first, then the event id.
    std::vector<std::string> names;
    REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions{}, dir.path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const auto& name : names)
      families.emplace_back(name, rocksdb::ColumnFamilyOptions{});
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions{}, dir.path, families, &handles, &raw).ok());
    auto webhooks = std::find(names.begin(), names.end(), "webhooks") - names.begin();
    for (const auto& [pay_id, due] : {std::pair{"100", 1763782202000}, {"404", 1763782203000}}) {
      webhook_entry entry;
      entry.event_id = std::string{"evt_"} + pay_id;
      entry.pay_id = pay_id;
      entry.attempt = 2;
      entry.first_due_ms = 1763782201000;
      REQUIRE(raw->Put(rocksdb::WriteOptions{}, handles[static_cast<size_t>(webhooks)],
                       codec::encode_u64_be(static_cast<uint64_t>(due)) + entry.event_id,
                       codec::encode_webhook(entry))
                .ok());
    }
    for (auto* handle : handles)
      REQUIRE(raw->DestroyColumnFamilyHandle(handle).ok());
    delete raw;
  }
  auto store = open_store(dir.path);
  auto due = due_webhooks(*store);
  REQUIRE(due.size() == 1);  // "404" has no payment: nothing to tell, dropped
  CHECK(due[0].merchant_id == "shop");
  CHECK(due[0].event_id == "evt_100");
  CHECK(due[0].due_ms == 1763782202000);
  CHECK(due[0].attempt == 2);
  CHECK(due[0].first_due_ms == 1763782201000);
  CHECK(store->webhook_backlog() == 1);
  REQUIRE(store->finish_webhook(due[0]).ok());
  store.reset();
  CHECK(due_webhooks(*open_store(dir.path)).empty());
}

TEST_CASE("route: recorded while processing, refused once final") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {record("100", "A-1", 500)}, {}, created).ok());
  store_batch batch;
  batch.routes.push_back({"100", "sim-b"});
  batch.routes.push_back({"999", "sim-b"});
  store_batch_answers answers;
  REQUIRE(commit(*store, batch, answers).ok());
  CHECK(answers.routes == std::vector<bool>{true, false});
  std::optional<payment_record> order;
  REQUIRE(store->get("100", order).ok());
  CHECK(order->routed_channel == "sim-b");
  auto paid = result_for("100", 500);
  paid.channel_id = "sim-b";  // where it is routed now
  commit_results(*store, {paid});
  REQUIRE(commit(*store, batch, answers).ok());
  CHECK(answers.routes == std::vector<bool>{false, false});
}

TEST_CASE("join: a result from a channel the payment is not routed to is kept apart") {
  temp_dir dir;
  auto store = open_store(dir.path);
  auto routed = record("100", "A-1", 500);
  routed.routed_channel = "sim-b";
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {routed}, {}, created).ok());
  // sim-a speaks for a payment sent to sim-b: not applied, reported once.
  auto answers = commit_results(*store, {result_for("100", 500), result_for("100", 500)});
  CHECK_FALSE(answers.results[0].joined);
  CHECK_FALSE(answers.results[0].changed);
  REQUIRE(answers.conflicts.size() == 1);
  CHECK(answers.conflicts[0].what == result_conflict::against::route);
  CHECK(answers.conflicts[0].kept.status == "PROCESSING");
  CHECK(answers.conflicts[0].kept.channel_id == "sim-b");
  std::optional<payment_record> order;
  REQUIRE(store->get("100", order).ok());
  CHECK(order->status == "PROCESSING");
  // The payment goes on where it is routed.
  auto paid = result_for("100", 500);
  paid.channel_id = "sim-b";
  CHECK(commit_results(*store, {paid}).results[0].joined);
  REQUIRE(store->get("100", order).ok());
  CHECK(order->status == "SUCCEEDED");
  CHECK(store->count_keys()["conflicts"] == 1);
}

TEST_CASE("array literals for the database quote every text element") {
  pg_array_literal column;
  column.add("plain");
  column.add("say \"hi\", {x} \\ NULL");
  column.add_null();
  column.add("");
  CHECK(column.finish() == R"({"plain","say \"hi\", {x} \\ NULL",NULL,""})");
  CHECK(column.finish() == R"({"plain","say \"hi\", {x} \\ NULL",NULL,""})");
  CHECK(pg_array_literal{}.finish() == "{}");
}
