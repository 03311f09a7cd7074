#include "storage/local/local_store.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <unordered_map>

#include <rocksdb/cache.h>
#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <spdlog/spdlog.h>

#include "common/clock.hpp"
#include "storage/local/record_codec.hpp"
#include "storage/local/webhook_keys.hpp"

namespace paybus {

namespace {

const std::vector<std::string> family_names = {rocksdb::kDefaultColumnFamilyName,
                                               "orders",
                                               "idem",
                                               "outbox",
                                               "nonces",
                                               "meta",
                                               "results",
                                               "dispatch",
                                               "webhooks",
                                               "conflicts",
                                               "db_conflicts",
                                               "succeeded",
                                               "admin"};

/// The key of a payment in the `succeeded` index: channel, NUL, UTC day, NUL, pay_id.
std::string succeeded_key(const std::string& channel_id, const std::string& day,
                          const std::string& pay_id) {
  std::string key;
  key.reserve(channel_id.size() + day.size() + pay_id.size() + 2);
  key.append(channel_id);
  key.push_back('\0');
  key.append(day);
  key.push_back('\0');
  key.append(pay_id);
  return key;
}

/// Puts the index entry of a payment that became SUCCEEDED: the order's
/// currency (3 bytes), then the result as the results family holds it.
void put_succeeded(rocksdb::WriteBatch& batch, rocksdb::ColumnFamilyHandle* family,
                   const std::string& currency, const payment_result& result) {
  std::string value = currency;
  value.resize(3, ' ');
  value.append(codec::encode_result(result));
  batch.Put(family, succeeded_key(result.channel_id, utc_day(result.finished_at_ms), result.pay_id),
            value);
}

/// Drops nonces past their retention during compactions.
class nonce_expiry_filter : public rocksdb::CompactionFilter {
public:
  explicit nonce_expiry_filter(int64_t retention_ms) : retention_ms_(retention_ms) {
  }

  bool Filter(int, const rocksdb::Slice&, const rocksdb::Slice& value, std::string*,
              bool*) const override {
    if (value.size() != 8)
      return true;
    auto seen_at = static_cast<int64_t>(codec::decode_u64_be(value.ToStringView()));
    return seen_at + retention_ms_ < unix_now_ms();
  }

  const char* Name() const override {
    return "paybus.nonce_expiry";
  }

private:
  int64_t retention_ms_;
};

std::string nonce_key(std::string_view merchant_id, std::string_view nonce) {
  std::string key;
  key.reserve(merchant_id.size() + 1 + nonce.size());
  key.append(merchant_id);
  key.push_back('\0');
  key.append(nonce);
  return key;
}

/// RocksDB's own log goes to the process's log, not to a LOG file beside
/// the data: a LOG file that once hit a full disk makes RocksDB abort on the
/// next line it writes there (an assertion in WritableFileWriter).
class rocksdb_to_spdlog : public rocksdb::Logger {
public:
  rocksdb_to_spdlog() : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL) {
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list arguments) override {
    Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, arguments);
  }

  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list arguments) override {
    if (level < GetInfoLogLevel())
      return;
    char line[1024];
    std::vsnprintf(line, sizeof(line), format, arguments);
    if (level >= rocksdb::InfoLogLevel::ERROR_LEVEL)
      spdlog::error("rocksdb: {}", line);
    else
      spdlog::warn("rocksdb: {}", line);
  }
};

}  // namespace

std::unique_ptr<local_store>
local_store::open(const std::string& dir, const local_store_options& options, std::string& error) {
  // Made here, not by RocksDB, which logs an error line for a directory it
  // finds missing before it creates it (a fresh first start logged one).
  std::error_code made;
  std::filesystem::create_directories(dir, made);
  if (made) {
    error = "cannot create the local store " + dir + ": " + made.message();
    return nullptr;
  }
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.db_write_buffer_size = 3 * options.write_buffer_bytes;  // all memtables together
  db_options.info_log = std::make_shared<rocksdb_to_spdlog>();
  db_options.max_manifest_file_size = 64u << 20;
  // Flushes and compactions hand their files to the disk a megabyte at a
  // time (sync_file_range), never hundreds of dirty megabytes at once: the
  // writeback of such a pile held the WAL's fdatasync, and every client
  // waiting on it, 110 ms.
  db_options.bytes_per_sync = 1u << 20;
  if (options.env != nullptr)
    db_options.env = options.env;
  db_options.max_file_opening_threads = options.file_opening_threads;

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = rocksdb::NewLRUCache(options.block_cache_bytes);
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  // Index and filter blocks stay in memory outside the cache (about 1.3 bytes
  // a key): a point look-up never waits on disk for a filter.
  table.cache_index_and_filter_blocks = false;

  std::unique_ptr<local_store> store{new local_store};
  store->sync_ = options.sync;
  store->dir_ = dir;
  store->min_free_bytes_ = options.min_free_bytes;
  store->nonce_retention_ms_ = options.nonce_retention_ms;
  store->nonce_filter_ = std::make_unique<nonce_expiry_filter>(options.nonce_retention_ms);
  std::vector<rocksdb::ColumnFamilyDescriptor> families;
  for (const auto& name : family_names) {
    rocksdb::ColumnFamilyOptions family;
    family.write_buffer_size = options.write_buffer_bytes;
    family.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
    if (name == "nonces" || name == "idem" || name == "orders") {
      // Most look-ups here miss (a new nonce, a new order): a memtable bloom
      // filter answers those without walking the skip list.
      family.memtable_prefix_bloom_size_ratio = 0.05;
      family.memtable_whole_key_filtering = true;
    }
    if (name == "nonces") {
      family.compaction_filter = store->nonce_filter_.get();
      family.write_buffer_size = options.write_buffer_bytes / 2;
      // Compact every file at least daily so expired nonces do go.
      family.periodic_compaction_seconds = 86400;
    }
    families.emplace_back(name, family);
  }

  rocksdb::DB* db = nullptr;
  auto status = rocksdb::DB::Open(db_options, dir, families, &store->handles_, &db);
  if (!status.ok()) {
    if (status.IsIOError() && status.ToString().find("lock") != std::string::npos)
      error = "the local store " + dir + " is held by another process (is a bus running on it?)";
    else
      error = "cannot open the local store " + dir + ": " + status.ToString();
    return nullptr;
  }
  store->db_.reset(db);
  store->orders_ = store->handles_[1];
  store->idem_ = store->handles_[2];
  store->outbox_ = store->handles_[3];
  store->nonces_ = store->handles_[4];
  store->meta_ = store->handles_[5];
  store->results_ = store->handles_[6];
  store->dispatch_ = store->handles_[7];
  store->webhooks_ = store->handles_[8];
  store->conflicts_ = store->handles_[9];
  store->db_conflicts_ = store->handles_[10];
  store->succeeded_ = store->handles_[11];
  store->admin_ = store->handles_[12];
  status = store->index_succeeded_payments();
  if (status.IsNoSpace()) {
    spdlog::warn("local store: no room to index the succeeded payments by channel and day; "
                 "indexed at the next start");
  } else if (!status.ok()) {
    error = "cannot index the succeeded payments of " + dir
            + " by channel and day: " + status.ToString();
    return nullptr;
  }
  status = store->queue_webhooks_by_merchant();
  if (!status.ok()) {
    error = "cannot move the webhook outbox of " + dir
            + " to queues by merchant: " + status.ToString();
    return nullptr;
  }
  {
    std::unique_ptr<rocksdb::Iterator> hooks{
      db->NewIterator(rocksdb::ReadOptions{}, store->webhooks_)};
    int64_t count = 0;
    for (hooks->SeekToFirst(); hooks->Valid(); hooks->Next())
      ++count;
    store->webhook_backlog_ = count;
  }

  {
    std::unique_ptr<rocksdb::Iterator> waiting{
      db->NewIterator(rocksdb::ReadOptions{}, store->dispatch_)};
    int64_t count = 0;
    for (waiting->SeekToFirst(); waiting->Valid(); waiting->Next())
      ++count;
    store->dispatch_size_ = count;
  }

  // Recover the outbox cursor and size.
  std::unique_ptr<rocksdb::Iterator> it{db->NewIterator(rocksdb::ReadOptions{}, store->outbox_)};
  int64_t size = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next())
    ++size;
  store->outbox_size_ = size;
  it->SeekToLast();
  if (it->Valid())
    store->next_sequence_ = codec::decode_u64_be(it->key().ToStringView()) + 1;
  if (!it->status().ok()) {
    error = "cannot read the local store's outbox: " + it->status().ToString();
    return nullptr;
  }
  return store;
}

local_store::~local_store() {
  if (db_) {
    for (auto* handle : handles_)
      db_->DestroyColumnFamilyHandle(handle);
    db_->Close();
  }
}

rocksdb::Status local_store::read(const snapshot_keys& keys, store_snapshot& held) {
  held = store_snapshot{};
  held.orders.reserve(keys.order_ids.size() + keys.idempotency_keys.size());
  std::vector<std::string> order_ids = keys.order_ids;
  std::string pay_id;
  for (const auto& key : keys.idempotency_keys) {
    auto status = db_->Get(rocksdb::ReadOptions{}, idem_, key, &pay_id);
    if (status.IsNotFound())
      continue;
    if (!status.ok())
      return status;
    order_ids.push_back(pay_id);
    held.pay_ids.emplace(key, pay_id);
  }
  for (const auto& id : order_ids) {
    if (held.orders.count(id) > 0)
      continue;
    std::optional<payment_record> order;
    if (auto status = get(id, order); !status.ok())
      return status;
    if (order)
      held.orders.emplace(id, std::move(*order));
  }
  for (const auto& [key, id] : held.pay_ids)
    if (held.orders.count(id) == 0)
      return rocksdb::Status::Corruption("idempotency entry without order", id);
  for (const auto& id : keys.result_ids) {
    if (held.results.count(id) > 0)
      continue;
    std::optional<payment_result> result;
    if (auto status = get_result(id, result); !status.ok())
      return status;
    if (result)
      held.results.emplace(id, std::move(*result));
  }
  std::string ignored;
  for (const auto& key : keys.conflict_keys) {
    auto status = db_->Get(rocksdb::ReadOptions{}, conflicts_, key, &ignored);
    if (status.ok())
      held.conflicts.insert(key);
    else if (!status.IsNotFound())
      return status;
  }
  return rocksdb::Status::OK();
}

rocksdb::Status local_store::apply(const store_changes& changes) {
  if (changes.empty())
    return rocksdb::Status::OK();
  rocksdb::WriteBatch batch;
  for (const auto& record : changes.orders)
    batch.Put(orders_, record.pay_id, codec::encode_record(record));
  for (const auto& [key, pay_id] : changes.idempotency)
    batch.Put(idem_, key, pay_id);
  for (const auto& result : changes.results)
    batch.Put(results_, result.pay_id, codec::encode_result(result));
  for (const auto& [currency, result] : changes.succeeded)
    put_succeeded(batch, succeeded_, currency, result);
  for (const auto& pay_id : changes.results_removed)
    batch.Delete(results_, pay_id);
  uint64_t sequence = next_sequence_;
  std::string entry;
  for (const auto& row : changes.outbox) {
    entry.clear();
    entry.push_back(row.kind);
    entry.append(row.pay_id);
    batch.Put(outbox_, codec::encode_u64_be(sequence++), entry);
  }
  for (const auto& pay_id : changes.dispatch_added)
    batch.Put(dispatch_, pay_id, rocksdb::Slice{});
  for (const auto& pay_id : changes.dispatch_removed)
    batch.Delete(dispatch_, pay_id);
  // A move is applied only if its entry is still there: the same hand-back
  // twice (the notifier sends one again when the first went unanswered)
  // moves it once, and the backlog counts it once.
  int64_t webhooks_gone = 0;
  std::set<std::string> moved;
  std::string ignored;
  for (const auto& move : changes.webhook_moves) {
    auto key = webhook_key(move.from.merchant_id, move.from.due_ms, move.from.event_id);
    auto there = db_->Get(rocksdb::ReadOptions{}, webhooks_, key, &ignored);
    if (there.IsNotFound() || !moved.insert(key).second)
      continue;
    if (!there.ok())
      return there;
    batch.Delete(webhooks_, key);
    if (move.to)
      batch.Put(webhooks_, webhook_key(move.to->merchant_id, move.to->due_ms, move.to->event_id),
                codec::encode_webhook(*move.to));
    else
      ++webhooks_gone;
  }
  for (auto sequence_done : changes.outbox_removed)
    batch.Delete(outbox_, codec::encode_u64_be(sequence_done));
  for (const auto& hook : changes.webhooks)
    batch.Put(webhooks_, webhook_key(hook.merchant_id, hook.due_ms, hook.event_id),
              codec::encode_webhook(hook));
  for (const auto& late : changes.conflicts)
    batch.Put(conflicts_, conflict_key(late), codec::encode_result(late));
  for (const auto& conflict : changes.database_conflicts)
    batch.Put(db_conflicts_, database_conflict_key(conflict.pay_id, conflict.table),
              codec::encode_database_conflict(conflict));
  for (const auto& nonce : changes.nonces)
    batch.Put(nonces_, nonce_key(nonce.merchant_id, nonce.nonce),
              codec::encode_u64_be(static_cast<uint64_t>(nonce.seen_at_ms)));
  auto status = write(sync_, batch);
  if (!status.ok())
    return status;
  next_sequence_ = sequence;
  outbox_size_.fetch_add(static_cast<int64_t>(changes.outbox.size())
                           - static_cast<int64_t>(changes.outbox_removed.size()),
                         std::memory_order_relaxed);
  webhook_backlog_.fetch_add(static_cast<int64_t>(changes.webhooks.size()) - webhooks_gone,
                             std::memory_order_relaxed);
  dispatch_size_.fetch_add(static_cast<int64_t>(changes.dispatch_added.size())
                             - static_cast<int64_t>(changes.dispatch_removed.size()),
                           std::memory_order_relaxed);
  return status;
}

rocksdb::Status local_store::get_result(const std::string& pay_id,
                                        std::optional<payment_result>& result) {
  std::string bytes;
  auto status = db_->Get(rocksdb::ReadOptions{}, results_, pay_id, &bytes);
  if (status.IsNotFound()) {
    result.reset();
    return rocksdb::Status::OK();
  }
  if (!status.ok())
    return status;
  result.emplace();
  if (!codec::decode_result(bytes, *result)) {
    result.reset();
    return rocksdb::Status::Corruption("undecodable result", pay_id);
  }
  return status;
}

rocksdb::Status local_store::pending_dispatch(std::vector<payment_record>& records, size_t limit,
                                              const std::string& from_pay_id) {
  records.clear();
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, dispatch_)};
  for (it->Seek(from_pay_id); it->Valid() && records.size() < limit; it->Next()) {
    std::optional<payment_record> record;
    auto status = get(it->key().ToString(), record);
    if (!status.ok())
      return status;
    if (!record || is_final_status(record->status))
      continue;
    // A flagged result (another amount) is for people: the bus asks no more.
    std::optional<payment_result> result;
    status = get_result(record->pay_id, result);
    if (!status.ok())
      return status;
    if (!result || !result->flagged)
      records.push_back(std::move(*record));
  }
  return it->status();
}

rocksdb::Status local_store::get(const std::string& pay_id, std::optional<payment_record>& record) {
  std::string bytes;
  auto status = db_->Get(rocksdb::ReadOptions{}, orders_, pay_id, &bytes);
  if (status.IsNotFound()) {
    record.reset();
    return rocksdb::Status::OK();
  }
  if (!status.ok())
    return status;
  record.emplace();
  if (!codec::decode_record(bytes, *record)) {
    record.reset();
    return rocksdb::Status::Corruption("undecodable order", pay_id);
  }
  return status;
}

rocksdb::Status local_store::find(const std::string& merchant_id,
                                  const std::string& merchant_order_no,
                                  std::optional<payment_record>& record) {
  std::string pay_id;
  auto status = db_->Get(rocksdb::ReadOptions{}, idem_,
                         idempotency_key(merchant_id, merchant_order_no), &pay_id);
  if (status.IsNotFound()) {
    record.reset();
    return rocksdb::Status::OK();
  }
  if (!status.ok())
    return status;
  return get(pay_id, record);
}

rocksdb::Status local_store::read_outbox(uint64_t from_sequence, size_t limit,
                                         std::vector<outbox_entry>& entries) {
  entries.clear();
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, outbox_)};
  for (it->Seek(codec::encode_u64_be(from_sequence)); it->Valid() && entries.size() < limit;
       it->Next()) {
    auto value = it->value().ToStringView();
    if (value.empty())
      return rocksdb::Status::Corruption("empty outbox entry");
    outbox_entry entry;
    entry.sequence = codec::decode_u64_be(it->key().ToStringView());
    entry.kind = value[0];
    entry.pay_id.assign(value.substr(1));
    entries.push_back(std::move(entry));
  }
  return it->status();
}

rocksdb::Status local_store::read_outbox_rows(const std::vector<outbox_entry>& entries,
                                              outbox_rows& rows, size_t& read) {
  rows = outbox_rows{};
  rows.records.reserve(entries.size());
  for (read = 0; read < entries.size(); ++read) {
    const auto& entry = entries[read];
    bool found = false;
    rocksdb::Status status;
    if (entry.kind == 'R') {
      std::optional<payment_result> result;
      status = get_result(entry.pay_id, result);
      if (status.ok() && result) {
        rows.results.push_back(std::move(*result));
        rows.result_entries.push_back(read);
        found = true;
      }
    } else {
      std::optional<payment_record> record;
      status = get(entry.pay_id, record);
      if (status.ok() && record) {
        rows.records.push_back(std::move(*record));
        rows.record_entries.push_back(read);
        found = true;
      }
    }
    if (found)
      continue;
    auto what = "outbox entry " + std::to_string(entry.sequence) + " (" + entry.kind
                + ") names pay_id " + entry.pay_id;
    if (!status.ok())
      return rocksdb::Status::IOError(what + ", which cannot be read", status.ToString());
    return rocksdb::Status::Corruption(what + ", which the store does not hold");
  }
  return rocksdb::Status::OK();
}

rocksdb::Status local_store::database_conflict_kept(const std::string& pay_id,
                                                    const std::string& table, bool& kept) {
  std::string ignored;
  auto status = db_->Get(rocksdb::ReadOptions{}, db_conflicts_,
                         database_conflict_key(pay_id, table), &ignored);
  kept = status.ok();
  return status.IsNotFound() ? rocksdb::Status::OK() : status;
}

rocksdb::Status local_store::remove_outbox(const std::vector<outbox_entry>& entries) {
  store_changes changes;
  for (const auto& entry : entries)
    changes.outbox_removed.push_back(entry.sequence);
  return apply(changes);
}

rocksdb::Status local_store::get_admin(const std::string& name, std::optional<std::string>& value) {
  return get_optional(admin_, name, value);
}

rocksdb::Status
local_store::put_admin(const std::vector<std::pair<std::string, std::string>>& entries) {
  rocksdb::WriteBatch batch;
  for (const auto& [name, value] : entries)
    batch.Put(admin_, name, value);
  return write(true, batch);
}

rocksdb::Status local_store::admin_tail(const std::string& prefix, size_t count,
                                        std::vector<std::string>& values) {
  values.clear();
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, admin_)};
  // The last key under the prefix: seek before the first key past it.
  std::string past = prefix;
  past.push_back('\xff');
  it->SeekForPrev(past);
  for (; it->Valid() && values.size() < count && it->key().starts_with(prefix); it->Prev())
    values.push_back(it->value().ToString());
  std::reverse(values.begin(), values.end());
  return it->status();
}

rocksdb::Status local_store::find_webhook(const std::string& merchant_id,
                                          const std::string& event_id,
                                          std::optional<webhook_entry>& entry) {
  entry.reset();
  std::string prefix = merchant_id;
  prefix.push_back('\0');
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, webhooks_)};
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto key = it->key().ToStringView();
    if (key.size() != prefix.size() + 8 + event_id.size()
        || key.substr(prefix.size() + 8) != event_id)
      continue;
    webhook_entry found;
    if (!codec::decode_webhook(it->value().ToStringView(), found))
      return rocksdb::Status::Corruption("webhook entry of " + event_id + " cannot be read");
    std::string_view merchant;
    split_webhook_key(key, merchant, found.due_ms);
    found.merchant_id = merchant_id;
    entry = std::move(found);
    return rocksdb::Status::OK();
  }
  return it->status();
}

rocksdb::Status local_store::oldest_waiting(std::optional<std::string>& outbox_pay_id,
                                            std::optional<int64_t>& webhook_first_due_ms) {
  outbox_pay_id.reset();
  webhook_first_due_ms.reset();
  {
    // From where the head was last time: entries below it are gone, and new
    // ones are numbered above every entry there is. (From the first key,
    // every look would walk past the deletion markers of all rows delivered
    // since the last compaction.)
    std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, outbox_)};
    it->Seek(codec::encode_u64_be(outbox_head_hint_.load(std::memory_order_relaxed)));
    if (it->Valid()) {
      outbox_head_hint_.store(codec::decode_u64_be(it->key().ToStringView()),
                              std::memory_order_relaxed);
      if (it->value().size() > 1)
        outbox_pay_id = it->value().ToString().substr(1);
    }
    if (!it->status().ok())
      return it->status();
  }
  // The head of each merchant's queue holds its earliest due entry.
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, webhooks_)};
  for (it->SeekToFirst(); it->Valid();) {
    webhook_entry head;
    if (codec::decode_webhook(it->value().ToStringView(), head)
        && (!webhook_first_due_ms || head.first_due_ms < *webhook_first_due_ms))
      webhook_first_due_ms = head.first_due_ms;
    auto key = it->key().ToStringView();
    auto end = key.find('\0');
    if (end == std::string_view::npos)
      break;
    std::string next{key.substr(0, end)};
    next.push_back('\x01');  // past this merchant's queue
    it->Seek(next);
  }
  return it->status();
}

rocksdb::Status local_store::get_optional(rocksdb::ColumnFamilyHandle* family,
                                          const std::string& key,
                                          std::optional<std::string>& value) {
  std::string bytes;
  auto status = db_->Get(rocksdb::ReadOptions{}, family, key, &bytes);
  if (status.IsNotFound()) {
    value.reset();
    return rocksdb::Status::OK();
  }
  if (status.ok())
    value = std::move(bytes);
  return status;
}

rocksdb::Status local_store::get_meta(const std::string& name, std::optional<std::string>& value) {
  return get_optional(meta_, name, value);
}

rocksdb::Status local_store::put_meta(const std::string& name, const std::string& value) {
  rocksdb::WriteBatch batch;
  batch.Put(meta_, name, value);
  return write(true, batch);
}

std::string local_store::last_pay_id() {
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, orders_)};
  it->SeekToLast();
  return it->Valid() ? it->key().ToString() : std::string{};
}

std::optional<bool> local_store::nonce_seen(std::string_view merchant_id, std::string_view nonce,
                                            int64_t now_ms) {
  std::string value;
  auto status = db_->Get(rocksdb::ReadOptions{}, nonces_, nonce_key(merchant_id, nonce), &value);
  if (status.IsNotFound())
    return false;
  if (!status.ok() || value.size() != 8)
    return std::nullopt;
  auto seen_at = static_cast<int64_t>(codec::decode_u64_be(value));
  return seen_at + nonce_retention_ms_ >= now_ms;
}

rocksdb::Status local_store::compact_nonces() {
  rocksdb::FlushOptions flush;
  auto status = db_->Flush(flush, nonces_);
  if (!status.ok())
    return status;
  return db_->CompactRange(rocksdb::CompactRangeOptions{}, nonces_, nullptr, nullptr);
}

rocksdb::Status
local_store::scan(const std::string& family, const std::string& from,
                  const std::function<bool(std::string_view, std::string_view)>& visit) {
  for (size_t i = 0; i < family_names.size(); ++i) {
    if (family_names[i] != family)
      continue;
    std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, handles_[i])};
    for (it->Seek(from); it->Valid(); it->Next())
      if (!visit(it->key().ToStringView(), it->value().ToStringView()))
        break;
    return it->status();
  }
  return rocksdb::Status::InvalidArgument("no such column family", family);
}

rocksdb::Status
local_store::succeeded_on(const std::string& channel_id, const std::string& day,
                          const std::string& after,
                          const std::function<bool(const succeeded_payment&)>& visit) {
  auto prefix = succeeded_key(channel_id, day, "");
  auto from = prefix + after;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, succeeded_)};
  succeeded_payment payment;
  it->Seek(from);
  if (!after.empty() && it->Valid() && it->key() == from)
    it->Next();
  for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
    auto value = it->value().ToStringView();
    if (value.size() < 3 || !codec::decode_result(value.substr(3), payment.result))
      return rocksdb::Status::Corruption("an unreadable entry in the succeeded index",
                                         it->key().ToString());
    payment.currency.assign(value.substr(0, 3));
    if (!visit(payment))
      break;
  }
  return it->status();
}

rocksdb::Status local_store::index_succeeded_payments() {
  static const std::string done = "succeeded_index";
  std::optional<std::string> marker;
  auto status = get_meta(done, marker);
  if (!status.ok() || marker)
    return status;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, orders_)};
  rocksdb::WriteBatch batch;
  int64_t indexed = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    payment_record record;
    if (!codec::decode_record(it->value().ToStringView(), record)
        || record.status != payment_status::succeeded)
      continue;  // damage is reported where payments are read
    std::optional<payment_result> result;
    status = get_result(record.pay_id, result);
    if (!status.ok())
      return status;
    if (!result || result->flagged || result->status != payment_status::succeeded)
      continue;
    put_succeeded(batch, succeeded_, record.order.currency, *result);
    ++indexed;
    if (batch.Count() >= 10'000) {
      status = write(sync_, batch);
      if (!status.ok())
        return status;
      batch.Clear();
    }
  }
  if (!it->status().ok())
    return it->status();
  batch.Put(meta_, done, "1");
  status = write(sync_, batch);
  if (status.ok() && indexed > 0)
    spdlog::info("local store: {} succeeded payments indexed by channel and day", indexed);
  return status;
}

std::map<std::string, uint64_t> local_store::count_keys() {
  std::map<std::string, uint64_t> counts;
  for (size_t i = 0; i < handles_.size(); ++i) {
    std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, handles_[i])};
    uint64_t count = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next())
      ++count;
    counts[family_names[i]] = count;
  }
  return counts;
}

rocksdb::Status local_store::write(bool sync, rocksdb::WriteBatch& batch) {
  if (auto room = room_to_write(); !room.ok())
    return room;
  rocksdb::WriteOptions options;
  options.sync = sync;
  return db_->Write(options, &batch);
}

rocksdb::Status local_store::room_to_write() const {
  if (min_free_bytes_ == 0)
    return rocksdb::Status::OK();
  struct statvfs figures {};
  if (statvfs(dir_.c_str(), &figures) != 0)
    return rocksdb::Status::OK();  // cannot tell: let RocksDB try
  uint64_t free_bytes = static_cast<uint64_t>(figures.f_bavail) * figures.f_frsize;
  if (free_bytes >= min_free_bytes_)
    return rocksdb::Status::OK();
  return rocksdb::Status::NoSpace("local store: " + std::to_string(free_bytes)
                                  + " bytes free, below store.min_free_bytes = "
                                  + std::to_string(min_free_bytes_));
}

rocksdb::Status local_store::resume() {
  auto status = db_->Resume();
  return status.ok() ? room_to_write() : status;
}

}  // namespace paybus
