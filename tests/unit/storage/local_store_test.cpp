#include <algorithm>
#include <filesystem>
#include <limits>
#include <set>

#include <catch2/catch.hpp>

#include "actors/admin/admin_actor.hpp"
#include "actors/store/commit.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "storage/database/pg_database.hpp"
#include "storage/local/local_store.hpp"
#include "storage/local/record_codec.hpp"

using namespace paybus;

namespace {

struct temp_dir {
  std::string path
    = (std::filesystem::temp_directory_path() / ("paybus-store-test-" + crypto::random_token(8)))
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

}  // namespace

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
  CHECK(bytes[0] == 2);  // version 2 while no channel holds it
  CHECK_FALSE(decoded.held);
  original.held = true;
  auto held = codec::encode_record(original);
  CHECK(held[0] == 3);
  CHECK(held.size() == bytes.size() + 1);
  REQUIRE(codec::decode_record(held, decoded));
  CHECK(decoded.held);
  CHECK(decoded.routed_channel == original.routed_channel);
  held.back() = 2;  // a flag is 1 or absent
  CHECK_FALSE(codec::decode_record(held, decoded));
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
      REQUIRE(
        commit(*store, {record(std::to_string(200 + i), "B-" + std::to_string(i))}, {}, results)
          .ok());
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
  REQUIRE(commit(*store, {},
                 {{"demo", "old-nonce-aaaaaaaa", 1000}, {"demo", "new-nonce-aaaaaaaa", now}},
                 results)
            .ok());
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

/// A store opened with RocksDB alone, every family as it is: to write what an
/// earlier build left behind.
struct raw_store {
  std::vector<std::string> names;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;

  explicit raw_store(const std::string& path) {
    REQUIRE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions{}, path, &names).ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> families;
    for (const auto& name : names)
      families.emplace_back(name, rocksdb::ColumnFamilyOptions{});
    REQUIRE(rocksdb::DB::Open(rocksdb::DBOptions{}, path, families, &handles, &db).ok());
  }
  ~raw_store() {
    for (auto* handle : handles)
      db->DestroyColumnFamilyHandle(handle);
    delete db;
  }
  rocksdb::ColumnFamilyHandle* family(const std::string& name) const {
    return handles.at(
      static_cast<size_t>(std::find(names.begin(), names.end(), name) - names.begin()));
  }
};

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
  webhook_cursor cursor;  // a fresh one: the read walks every queue
  REQUIRE(
    store
      .due_webhooks(
        now_ms, monotonic_now_ms(), [=](const std::string&) { return room; }, cursor, due, next_due)
      .ok());
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

}  // namespace

TEST_CASE("statuses and sources are kept as their protocol words, and an unknown word is damage") {
  auto original = record("100", "A-1");
  original.status = payment_status::closed;
  auto bytes = codec::encode_record(original);
  CHECK(bytes.find("CLOSED") != std::string::npos);
  payment_record decoded;
  REQUIRE(codec::decode_record(bytes, decoded));
  CHECK(decoded.status == payment_status::closed);
  bytes.replace(bytes.find("CLOSED"), 6, "CLOSEX");
  CHECK_FALSE(codec::decode_record(bytes, decoded));

  auto result = result_for("100", 500, payment_status::failed);
  result.source = result_source::notify;
  auto stored = codec::encode_result(result);
  CHECK(stored.find("FAILED") != std::string::npos);
  CHECK(stored.find("notify") != std::string::npos);
  payment_result read;
  REQUIRE(codec::decode_result(stored, read));
  CHECK(read.status == payment_status::failed);
  CHECK(read.source == result_source::notify);
  auto unknown_source = stored;
  unknown_source.replace(unknown_source.find("notify"), 6, "notifx");
  CHECK_FALSE(codec::decode_result(unknown_source, read));
  // A result is final: PROCESSING is no result.
  result.status = payment_status::processing;
  CHECK_FALSE(codec::decode_result(codec::encode_result(result), read));
}

TEST_CASE("the store applies a settlement's changes in one batch and reads them back") {
  temp_dir dir;
  auto order = record("100", "A-1", 500);
  order.status = payment_status::succeeded;
  auto paid = result_for("100", 500);
  auto late = result_for("100", 500, payment_status::failed);
  {
    auto store = open_store(dir.path);
    store_changes changes;
    changes.orders = {order, record("101", "A-2", 700)};
    changes.idempotency = {{idempotency_key("demo", "A-1"), "100"},
                           {idempotency_key("demo", "A-2"), "101"}};
    changes.results = {paid};
    changes.outbox = {{0, 'O', "100"}, {0, 'O', "101"}, {0, 'R', "100"}};
    changes.dispatch_added = {"101"};
    webhook_entry hook;
    hook.merchant_id = "demo";
    hook.event_id = "evt_100";
    hook.pay_id = "100";
    hook.first_due_ms = hook.due_ms = 1000;
    changes.webhooks = {hook};
    changes.conflicts = {late};
    changes.nonces = {{"demo", "nonce-aaaaaaaaaaaa", unix_now_ms()}};
    REQUIRE(store->apply(changes).ok());
    CHECK(store->outbox_size() == 3);
    CHECK(store->webhook_backlog() == 1);
    CHECK(outbox_kinds(*store) == std::vector<char>{'O', 'O', 'R'});
  }
  auto store = open_store(dir.path);
  snapshot_keys keys;
  keys.idempotency_keys = {idempotency_key("demo", "A-1"), idempotency_key("demo", "A-9")};
  keys.order_ids = {"101", "999"};
  keys.result_ids = {"100", "101"};
  keys.conflict_keys = {conflict_key(late), conflict_key(paid)};
  store_snapshot held;
  REQUIRE(store->read(keys, held).ok());
  CHECK(held.pay_ids.size() == 1);
  CHECK(held.pay_ids.at(idempotency_key("demo", "A-1")) == "100");
  REQUIRE(held.orders.size() == 2);  // 100 through its idempotency entry, and 101
  CHECK(held.orders.at("100").status == payment_status::succeeded);
  CHECK(held.orders.at("101").order.amount_minor == 700);
  REQUIRE(held.results.size() == 1);
  CHECK(held.results.at("100").channel_txn_id == "T-100");
  CHECK(held.conflicts == std::unordered_set<std::string>{conflict_key(late)});
  std::vector<payment_record> pending;
  REQUIRE(store->pending_dispatch(pending, 10).ok());
  REQUIRE(pending.size() == 1);
  CHECK(pending[0].pay_id == "101");
  CHECK(due_webhooks(*store).size() == 1);
  // Outbox numbers go on after a reopen; a removed dispatch entry is gone.
  store_changes more;
  more.outbox = {{0, 'R', "101"}};
  more.dispatch_removed = {"101"};
  REQUIRE(store->apply(more).ok());
  std::vector<outbox_entry> entries;
  REQUIRE(store->read_outbox(0, 10, entries).ok());
  REQUIRE(entries.size() == 4);
  CHECK(entries[3].sequence == entries[2].sequence + 1);
  CHECK(entries[3].pay_id == "101");
  REQUIRE(store->pending_dispatch(pending, 10).ok());
  CHECK(pending.empty());
  // Nothing to write is no write.
  CHECK(store->apply(store_changes{}).ok());
  CHECK(store->count_keys()["nonces"] == 1);
}

TEST_CASE("the store refuses an idempotency entry whose order is missing as corruption") {
  temp_dir dir;
  auto store = open_store(dir.path);
  store_changes changes;
  changes.idempotency = {{idempotency_key("demo", "A-1"), "100"}};
  REQUIRE(store->apply(changes).ok());
  snapshot_keys keys;
  keys.idempotency_keys = {idempotency_key("demo", "A-1")};
  store_snapshot held;
  CHECK(store->read(keys, held).IsCorruption());
}

TEST_CASE("a commit reads, settles and applies: a result joins its order through RocksDB") {
  temp_dir dir;
  {
    auto store = open_store(dir.path);
    std::vector<order_stored> created;
    REQUIRE(commit(*store, {record("100", "A-1", 500)}, {}, created).ok());
    auto answers = commit_results(*store, {result_for("100", 500)});
    CHECK(answers.results[0].joined);
    // A contradiction later is kept in the conflicts family, not applied.
    CHECK(commit_results(*store, {result_for("100", 500, payment_status::failed)}).conflicts.size()
          == 1);
  }
  auto store = open_store(dir.path);
  std::optional<payment_record> order;
  REQUIRE(store->get("100", order).ok());
  CHECK(order->status == payment_status::succeeded);
  CHECK(outbox_kinds(*store) == std::vector<char>{'O', 'R'});
  CHECK(store->count_keys()["conflicts"] == 1);
  CHECK(due_webhooks(*store).size() == 1);
  std::vector<payment_record> pending;
  REQUIRE(store->pending_dispatch(pending, 10).ok());
  CHECK(pending.empty());
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
  webhook_cursor cursor;
  REQUIRE(
    store->due_webhooks(std::numeric_limits<int64_t>::max(), 1, room, cursor, due, next_due).ok());
  REQUIRE(due.size() == 4);
  CHECK(due[0].merchant_id == "demo");
  CHECK(due[0].pay_id == "1000");  // oldest first within a merchant
  CHECK(due[3].merchant_id == "shop");
  CHECK(due[3].pay_id == "2000");
  REQUIRE(next_due);  // demo's fourth is due already
  CHECK(*next_due <= unix_now_ms());

  // Nothing is due before the first entry's time; next_due says when.
  REQUIRE(store->due_webhooks(due[0].due_ms - 1, 2, room, cursor, due, next_due).ok());
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

TEST_CASE("webhooks: the notifier's outcome applied twice moves the entry once, counted once") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  REQUIRE(
    commit(*store, {record("100", "A-100", 500), record("101", "A-101", 500)}, {}, created).ok());
  commit_results(*store, {result_for("100", 500), result_for("101", 500)});
  CHECK(store->webhook_backlog() == 2);
  auto due = due_webhooks(*store);
  REQUIRE(due.size() == 2);
  // A retry, handed back twice (the first answer was late): one entry, one attempt more.
  REQUIRE(store->reschedule_webhook(due[0], 5000).ok());
  REQUIRE(store->reschedule_webhook(due[0], 5000).ok());
  CHECK(store->webhook_backlog() == 2);
  // A delivery, handed back twice: gone once.
  REQUIRE(store->finish_webhook(due[1]).ok());
  REQUIRE(store->finish_webhook(due[1]).ok());
  CHECK(store->webhook_backlog() == 1);
  auto left = due_webhooks(*store);
  REQUIRE(left.size() == 1);
  CHECK(left[0].pay_id == due[0].pay_id);
  CHECK(left[0].attempt == due[0].attempt + 1);
  CHECK(left[0].due_ms == 5000);
  CHECK(store->count_keys()["webhooks"] == 1);
  // In one batch too.
  store_changes twice;
  twice.webhook_moves = {{left[0], std::nullopt}, {left[0], std::nullopt}};
  REQUIRE(store->apply(twice).ok());
  CHECK(store->webhook_backlog() == 0);
  CHECK(store->count_keys()["webhooks"] == 0);
}

TEST_CASE("webhooks: a read seeks past the delivered head and still finds every entry put since") {
  temp_dir dir;
  auto store = open_store(dir.path);
  // The notifier's cursor, told of every put as the store writer tells it;
  // the monotonic clock stands still, so only the first read walks.
  webhook_cursor cursor;
  auto final_payment = [&](const std::string& pay_id, const std::string& merchant) {
    auto r = record(pay_id, "A-" + pay_id, 500);
    r.order.merchant_id = merchant;
    std::vector<order_stored> created;
    REQUIRE(commit(*store, {r}, {}, created).ok());
    for (const auto& put : commit_results(*store, {result_for(pay_id, 500)}).webhooks_queued)
      cursor.note_put(put.merchant_id, put.due_ms);
  };
  auto read = [&](int64_t now_ms) {
    std::vector<webhook_entry> due;
    std::optional<int64_t> next_due;
    REQUIRE(store
              ->due_webhooks(
                now_ms, 1, [](const std::string&) { return size_t{10}; }, cursor, due, next_due)
              .ok());
    return due;
  };
  auto pay_ids = [&](int64_t now_ms) {
    std::vector<std::string> ids;
    for (const auto& entry : read(now_ms))
      ids.push_back(entry.pay_id);
    return ids;
  };
  final_payment("100", "demo");
  final_payment("101", "demo");
  auto due = read(std::numeric_limits<int64_t>::max());  // the first read walks every queue
  REQUIRE(due.size() == 2);
  CHECK(cursor.walked_ms == 1);
  // demo's head is now a retry due far ahead; the other is delivered.
  int64_t far = unix_now_ms() + 3'600'000;
  REQUIRE(store->reschedule_webhook(due[0], far).ok());
  cursor.note_put("demo", far);
  REQUIRE(store->finish_webhook(due[1]).ok());
  CHECK(pay_ids(unix_now_ms()).empty());
  // Put after that read, due before the head it found: found.
  final_payment("102", "demo");
  CHECK(pay_ids(unix_now_ms()) == std::vector<std::string>{"102"});
  // A merchant the reads have not met: found at once, not at the next walk.
  final_payment("200", "shop");
  CHECK(pay_ids(unix_now_ms()) == std::vector<std::string>{"102", "200"});
  // A queue emptied, then put to again.
  for (const auto& entry : read(unix_now_ms()))
    REQUIRE(store->finish_webhook(entry).ok());
  CHECK(pay_ids(unix_now_ms()).empty());
  final_payment("201", "shop");
  CHECK(pay_ids(unix_now_ms()) == std::vector<std::string>{"201"});
  CHECK(pay_ids(far) == std::vector<std::string>{"100", "201"});
  CHECK(store->webhook_backlog() == 2);
  // Without the writer's word, a put is found at the next walk only.
  auto r = record("300", "A-300", 500);
  r.order.merchant_id = "late";
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {r}, {}, created).ok());
  commit_results(*store, {result_for("300", 500)});
  CHECK(pay_ids(unix_now_ms()) == std::vector<std::string>{"201"});
  std::vector<webhook_entry> walked;
  std::optional<int64_t> next_due;
  REQUIRE(store
            ->due_webhooks(
              unix_now_ms(), 1 + webhook_cursor::walk_interval_ms,
              [](const std::string&) { return size_t{10}; }, cursor, walked, next_due)
            .ok());
  CHECK(walked.size() == 2);
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
    raw_store raw{dir.path};
    for (const auto& [pay_id, due] : {std::pair{"100", 1763782202000}, {"404", 1763782203000}}) {
      webhook_entry entry;
      entry.event_id = std::string{"evt_"} + pay_id;
      entry.pay_id = pay_id;
      entry.attempt = 2;
      entry.first_due_ms = 1763782201000;
      REQUIRE(raw.db
                ->Put(rocksdb::WriteOptions{}, raw.family("webhooks"),
                      codec::encode_u64_be(static_cast<uint64_t>(due)) + entry.event_id,
                      codec::encode_webhook(entry))
                .ok());
    }
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

TEST_CASE("outbox rows are read up to the first entry the store cannot read, and no further") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  REQUIRE(commit(*store, {record("100", "A-1")}, {}, created).ok());
  // Against the store's invariant: an entry naming a payment it does not
  // hold, then one that it does.
  store_changes damaged;
  damaged.outbox = {{0, 'O', "404"}, {0, 'O', "100"}};
  REQUIRE(store->apply(damaged).ok());
  std::vector<outbox_entry> entries;
  REQUIRE(store->read_outbox(0, 10, entries).ok());
  REQUIRE(entries.size() == 3);
  outbox_rows rows;
  size_t read = 99;
  auto status = store->read_outbox_rows(entries, rows, read);
  CHECK(status.IsCorruption());
  CHECK(status.ToString().find("pay_id 404") != std::string::npos);
  CHECK(read == 1);
  REQUIRE(rows.records.size() == 1);
  CHECK(rows.records[0].pay_id == "100");
  CHECK(rows.record_entries == std::vector<size_t>{0});
  // Read whole when every entry is there.
  entries.resize(1);
  CHECK(store->read_outbox_rows(entries, rows, read).ok());
  CHECK(read == 1);
}

TEST_CASE("a row the database holds otherwise is kept apart under its pay_id and table") {
  temp_dir dir;
  auto store = open_store(dir.path);
  store_changes changes;
  changes.database_conflicts
    = {{"payment_orders", "100", R"({"pay_id":"100"})", R"([{"pay_id":"111"}])", 42}};
  REQUIRE(store->apply(changes).ok());
  bool kept = false;
  REQUIRE(store->database_conflict_kept("100", "payment_orders", kept).ok());
  CHECK(kept);
  REQUIRE(store->database_conflict_kept("100", "payment_results", kept).ok());
  CHECK_FALSE(kept);
  std::vector<database_conflict> read;
  REQUIRE(store
            ->scan("db_conflicts", "",
                   [&](std::string_view, std::string_view value) {
                     database_conflict conflict;
                     REQUIRE(codec::decode_database_conflict(value, conflict));
                     read.push_back(conflict);
                     return true;
                   })
            .ok());
  REQUIRE(read.size() == 1);
  CHECK(read[0].theirs == R"([{"pay_id":"111"}])");
  CHECK(read[0].found_at_ms == 42);
}

TEST_CASE("SUCCEEDED payments are indexed by channel and day with their result, once") {
  temp_dir dir;
  auto store = open_store(dir.path);
  std::vector<order_stored> created;
  REQUIRE(
    commit(*store,
           {record("176378220012300001000001", "I-1"), record("176378220012300001000002", "I-2"),
            record("176378220012300001000003", "I-3")},
           {}, created)
      .ok());
  auto other = result_for("176378220012300001000003", 100);
  other.channel_id = "sim-b";
  commit_results(*store,
                 {result_for("176378220012300001000001", 100),
                  result_for("176378220012300001000002", 100, payment_status::failed), other});
  // The same answer again changes nothing, and indexes nothing twice.
  commit_results(*store, {result_for("176378220012300001000001", 100)});
  // A result before its order is indexed when the order joins it.
  commit_results(*store, {result_for("176378220012300001000004", 100)});
  auto early = record("176378220012300001000004", "I-4");
  early.routed_channel = "sim-a";
  REQUIRE(commit(*store, {early}, {}, created).ok());

  auto day = [&](const std::string& channel, const std::string& date,
                 const std::string& after = "") {
    std::vector<std::string> ids;
    REQUIRE(store
              ->succeeded_on(channel, date, after,
                             [&](const local_store::succeeded_payment& p) {
                               CHECK(p.currency == "CNY");
                               CHECK(p.result.channel_id == channel);
                               ids.push_back(p.result.pay_id);
                               return true;
                             })
              .ok());
    return ids;
  };
  CHECK(day("sim-a", "2025-11-22")
        == std::vector<std::string>{"176378220012300001000001", "176378220012300001000004"});
  CHECK(day("sim-a", "2025-11-22", "176378220012300001000001")
        == std::vector<std::string>{"176378220012300001000004"});
  CHECK(day("sim-b", "2025-11-22") == std::vector<std::string>{"176378220012300001000003"});
  CHECK(day("sim-a", "2025-11-21").empty());
  CHECK(day("sim-a", "2025-11-23").empty());
}

TEST_CASE("a store written before the index has its SUCCEEDED payments indexed at open") {
  temp_dir dir;
  {
    auto store = open_store(dir.path);
    std::vector<order_stored> created;
    REQUIRE(commit(*store, {record("176378220012300001000001", "I-1")}, {}, created).ok());
    commit_results(*store, {result_for("176378220012300001000001", 100)});
  }
  {
    // As an older bus left it: no index entries, no marker.
    raw_store raw{dir.path};
    REQUIRE(raw.db->DropColumnFamily(raw.family("succeeded")).ok());
    REQUIRE(raw.db->Delete(rocksdb::WriteOptions{}, raw.family("meta"), "succeeded_index").ok());
  }
  auto store = open_store(dir.path);
  int found = 0;
  REQUIRE(store
            ->succeeded_on("sim-a", "2025-11-22", "",
                           [&](const local_store::succeeded_payment& p) {
                             CHECK(p.result.pay_id == "176378220012300001000001");
                             ++found;
                             return true;
                           })
            .ok());
  CHECK(found == 1);
}

TEST_CASE("the admin family keeps the switches and the audit log across a reopen, newest last") {
  temp_dir dir;
  {
    auto store = open_store(dir.path);
    REQUIRE(store->put_admin({{"switches", R"({"channels":{}})"}}).ok());
    // Written out of time order: read back in time order.
    REQUIRE(store->put_admin({{admin_audit_key(2000, 2), "second"}}).ok());
    REQUIRE(
      store->put_admin({{admin_audit_key(1000, 1), "first"}, {admin_audit_key(3000, 3), "third"}})
        .ok());
  }
  auto store = open_store(dir.path);
  std::optional<std::string> switches;
  REQUIRE(store->get_admin("switches", switches).ok());
  CHECK(switches == std::optional<std::string>{R"({"channels":{}})"});
  std::vector<std::string> tail;
  REQUIRE(store->admin_tail("audit/", 2, tail).ok());
  CHECK(tail == std::vector<std::string>{"second", "third"});
  REQUIRE(store->admin_tail("audit/", 10, tail).ok());
  CHECK(tail == std::vector<std::string>{"first", "second", "third"});
  std::optional<std::string> missing;
  REQUIRE(store->get_admin("nothing", missing).ok());
  CHECK_FALSE(missing);
  CHECK(store->count_keys()["admin"] == 4);
}

TEST_CASE("a waiting webhook is found by its merchant and event id") {
  temp_dir dir;
  auto store = open_store(dir.path);
  store_changes changes;
  for (const auto* merchant : {"demo", "demo2", "other"}) {
    webhook_entry entry;
    entry.merchant_id = merchant;
    entry.event_id = "evt_P1";
    entry.pay_id = "P1";
    entry.attempt = 3;
    entry.first_due_ms = 500;
    entry.due_ms = std::string{merchant} == "demo" ? 900 : 100;
    changes.webhooks.push_back(entry);
  }
  REQUIRE(store->apply(changes).ok());
  std::optional<webhook_entry> found;
  REQUIRE(store->find_webhook("demo", "evt_P1", found).ok());
  REQUIRE(found);
  CHECK(found->due_ms == 900);
  CHECK(found->attempt == 3);
  CHECK(found->merchant_id == "demo");
  REQUIRE(store->find_webhook("demo", "evt_P", found).ok());
  CHECK_FALSE(found);
  REQUIRE(store->find_webhook("dem", "evt_P1", found).ok());
  CHECK_FALSE(found);
  std::optional<std::string> oldest_row;
  std::optional<int64_t> oldest_webhook;
  REQUIRE(store->oldest_waiting(oldest_row, oldest_webhook).ok());
  CHECK_FALSE(oldest_row);
  CHECK(oldest_webhook == std::optional<int64_t>{500});
}

TEST_CASE("the count of unfinished payments is kept by every commit and counted again at open") {
  temp_dir dir;
  {
    auto store = open_store(dir.path);
    std::vector<order_stored> created;
    REQUIRE(commit(*store, {record("100", "A-1"), record("101", "A-2")}, {}, created).ok());
    CHECK(store->dispatch_size() == 2);
    commit_results(*store, {result_for("100", 100)});
    CHECK(store->dispatch_size() == 1);
    commit_results(*store, {result_for("100", 100)});  // again: nothing changes
    CHECK(store->dispatch_size() == 1);
    // An order created and made final in one batch never had an entry to delete.
    store_batch batch;
    batch.creates.push_back(record("102", "A-3"));
    batch.results.push_back(result_for("102", 100));
    store_batch_answers answers;
    settlement_policy policy;
    REQUIRE(commit(*store, batch, policy, 1763782201000, answers).ok());
    CHECK(store->dispatch_size() == 1);
    CHECK(store->count_keys()["dispatch"] == 1);
  }
  auto store = open_store(dir.path);
  CHECK(store->dispatch_size() == 1);
}
