#include "storage/local_store.hpp"

#include <sys/statvfs.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
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
#include "storage/record_codec.hpp"

namespace paybus {

namespace {

const std::vector<std::string> family_names
  = {rocksdb::kDefaultColumnFamilyName, "orders", "idem", "outbox", "nonces",
     "meta", "results", "dispatch", "webhooks", "conflicts"};

/// The webhook outbox, a queue a merchant: merchant id, NUL, due time (8
/// bytes big-endian), event id. A round reads each merchant's due entries
/// from the head of its own queue, so one merchant's backlog never hides
/// another's (docs/architecture.md). Merchant ids are never empty and have
/// no NUL; keys of the earlier layout (due time first) start with NUL.
std::string webhook_key(const std::string& merchant_id, int64_t due_ms,
                        const std::string& event_id) {
  std::string key;
  key.reserve(merchant_id.size() + 9 + event_id.size());
  key.append(merchant_id);
  key.push_back('\0');
  key.append(codec::encode_u64_be(static_cast<uint64_t>(due_ms)));
  key.append(event_id);
  return key;
}

/// Splits a webhook key: false if it is not one of this layout.
bool split_webhook_key(std::string_view key, std::string_view& merchant_id, int64_t& due_ms) {
  auto end = key.find('\0');
  if (end == 0 || end == std::string_view::npos || key.size() < end + 9)
    return false;
  merchant_id = key.substr(0, end);
  due_ms = static_cast<int64_t>(codec::decode_u64_be(key.substr(end + 1, 8)));
  return true;
}

bool is_final(const std::string& status) {
  return status == payment_status::succeeded || status == payment_status::failed
         || status == payment_status::closed;
}

/// Whether `late` says something else than the final result `kept`: another
/// status or channel, another transaction of the same channel, or another
/// amount. A repeat of the same answer (a duplicate notification, a query
/// after the answer) does not.
bool contradicts(const payment_result& kept, const payment_result& late) {
  return late.status != kept.status || late.channel_id != kept.channel_id
         || late.amount_minor != kept.amount_minor
         || (!late.channel_txn_id.empty() && !kept.channel_txn_id.empty()
             && late.channel_txn_id != kept.channel_txn_id);
}

/// Drops nonces past their retention during compactions.
class nonce_expiry_filter : public rocksdb::CompactionFilter {
public:
  explicit nonce_expiry_filter(int64_t retention_ms) : retention_ms_(retention_ms) {
  }

  bool Filter(int, const rocksdb::Slice&, const rocksdb::Slice& value,
              std::string*, bool*) const override {
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

} // namespace

std::string idempotency_key(const std::string& merchant_id,
                            const std::string& merchant_order_no) {
  std::string key;
  key.reserve(merchant_id.size() + 1 + merchant_order_no.size());
  key.append(merchant_id);
  key.push_back('\0');
  key.append(merchant_order_no);
  return key;
}

std::unique_ptr<local_store> local_store::open(
  const std::string& dir, const local_store_options& options,
  std::string& error) {
  rocksdb::Options db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.db_write_buffer_size = 3 * options.write_buffer_bytes;  // all memtables together
  db_options.info_log = std::make_shared<rocksdb_to_spdlog>();
  db_options.max_manifest_file_size = 64u << 20;

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
  store->default_webhook_merchants_ = options.default_webhook_merchants;
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
  auto status = rocksdb::DB::Open(db_options, dir, families, &store->handles_,
                                  &db);
  if (!status.ok()) {
    if (status.IsIOError() && status.ToString().find("lock") != std::string::npos)
      error = "the local store " + dir
              + " is held by another process (is a bus running on it?)";
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
  status = store->queue_webhooks_by_merchant();
  if (!status.ok()) {
    error = "cannot move the webhook outbox of " + dir + " to queues by merchant: "
            + status.ToString();
    return nullptr;
  }
  {
    std::unique_ptr<rocksdb::Iterator> hooks{db->NewIterator(rocksdb::ReadOptions{}, store->webhooks_)};
    int64_t count = 0;
    for (hooks->SeekToFirst(); hooks->Valid(); hooks->Next())
      ++count;
    store->webhook_backlog_ = count;
  }

  // Recover the outbox cursor and size.
  std::unique_ptr<rocksdb::Iterator> it{
    db->NewIterator(rocksdb::ReadOptions{}, store->outbox_)};
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

rocksdb::Status local_store::commit(const std::vector<payment_record>& orders,
                                    const std::vector<nonce_accepted>& nonces,
                                    std::vector<order_stored>& results) {
  store_batch batch;
  batch.creates = orders;
  batch.nonces = nonces;
  store_batch_answers answers;
  auto status = commit(batch, answers);
  results = std::move(answers.creates);
  return status;
}

namespace {

/// The batch being built, with what it has written so far readable first.
class batch_view {
public:
  explicit batch_view(local_store& store) : store_(store) {
  }

  rocksdb::Status order(const std::string& pay_id, std::optional<payment_record>& out) {
    if (auto hit = orders_.find(pay_id); hit != orders_.end()) {
      out = hit->second;
      return rocksdb::Status::OK();
    }
    return store_.get(pay_id, out);
  }

  rocksdb::Status result(const std::string& pay_id, std::optional<payment_result>& out) {
    if (auto hit = results_.find(pay_id); hit != results_.end()) {
      out = hit->second;
      return rocksdb::Status::OK();
    }
    return store_.get_result(pay_id, out);
  }

  void put_order(const payment_record& record) {
    orders_[record.pay_id] = record;
  }

  void put_result(const payment_result& result) {
    results_[result.pay_id] = result;
  }

private:
  local_store& store_;
  std::unordered_map<std::string, payment_record> orders_;
  std::unordered_map<std::string, payment_result> results_;
};

void apply_result(payment_record& order, const payment_result& result) {
  order.status = result.status;
  order.channel_txn_id = result.channel_txn_id;
  order.finished_at_ms = result.finished_at_ms;
}

} // namespace

rocksdb::Status local_store::commit(const store_batch& in, store_batch_answers& answers) {
  answers = store_batch_answers{};
  answers.creates.assign(in.creates.size(), order_stored{});
  answers.routes.assign(in.routes.size(), false);
  answers.results.assign(in.results.size(), result_recorded{});
  rocksdb::WriteBatch batch;
  batch_view view{*this};
  std::unordered_map<std::string, size_t> decided;
  uint64_t sequence = next_sequence_;
  int64_t outbox_added = 0;
  auto outbox = [&](char kind, const std::string& pay_id) {
    std::string entry;
    entry.reserve(1 + pay_id.size());
    entry.push_back(kind);
    entry.append(pay_id);
    batch.Put(outbox_, codec::encode_u64_be(sequence++), entry);
    ++outbox_added;
  };
  auto write_order = [&](const payment_record& record) {
    batch.Put(orders_, record.pay_id, codec::encode_record(record));
    view.put_order(record);
  };
  std::vector<std::pair<std::string, int64_t>> webhooks_put;  // merchant, due
  auto webhook = [&](const payment_record& record) {
    if (!wants_webhook(record))
      return;
    webhook_entry entry;
    entry.event_id = "evt_" + record.pay_id;  // one final event per payment: stable
    entry.pay_id = record.pay_id;
    entry.first_due_ms = unix_now_ms();
    batch.Put(webhooks_, webhook_key(record.order.merchant_id, entry.first_due_ms, entry.event_id),
              codec::encode_webhook(entry));
    webhooks_put.emplace_back(record.order.merchant_id, entry.first_due_ms);
  };

  std::string existing_pay_id;
  for (size_t i = 0; i < in.creates.size(); ++i) {
    auto record = in.creates[i];
    auto key = idempotency_key(record.order.merchant_id, record.order.merchant_order_no);
    if (auto hit = decided.find(key); hit != decided.end()) {
      answers.creates[i].created = false;
      answers.creates[i].record = answers.creates[hit->second].record;
      continue;
    }
    auto status = db_->Get(rocksdb::ReadOptions{}, idem_, key, &existing_pay_id);
    if (status.ok()) {
      std::optional<payment_record> existing;
      status = view.order(existing_pay_id, existing);
      if (!status.ok())
        return status;
      if (!existing)
        return rocksdb::Status::Corruption("idempotency entry without order", existing_pay_id);
      answers.creates[i].created = false;
      answers.creates[i].record = std::move(*existing);
      decided.emplace(std::move(key), i);
      continue;
    }
    if (!status.IsNotFound())
      return status;
    // A result that arrived before its order joins now.
    std::optional<payment_result> early;
    status = view.result(record.pay_id, early);
    if (!status.ok())
      return status;
    bool joins = early && !early->flagged && early->amount_minor == record.order.amount_minor;
    if (joins)
      apply_result(record, *early);
    if (early && !early->flagged && !joins) {  // paid at another amount: never SUCCEEDED silently
      early->flagged = true;
      batch.Put(results_, early->pay_id, codec::encode_result(*early));
      view.put_result(*early);
      ++answers.flagged;
    }
    write_order(record);
    batch.Put(idem_, key, record.pay_id);
    outbox('O', record.pay_id);
    if (joins) {
      outbox('R', record.pay_id);
      webhook(record);
    } else
      batch.Put(dispatch_, record.pay_id, rocksdb::Slice{});
    answers.creates[i].created = true;
    answers.creates[i].record = record;
    decided.emplace(std::move(key), i);
  }

  for (size_t i = 0; i < in.routes.size(); ++i) {
    const auto& route = in.routes[i];
    std::optional<payment_record> order;
    auto status = view.order(route.pay_id, order);
    if (!status.ok())
      return status;
    if (!order || is_final(order->status))
      continue;
    // A payment whose result is flagged goes nowhere else: which amount its
    // channel took is for people to settle.
    std::optional<payment_result> kept;
    status = view.result(route.pay_id, kept);
    if (!status.ok())
      return status;
    if (kept && kept->flagged)
      continue;
    order->routed_channel = route.channel_id;
    write_order(*order);
    answers.routes[i] = true;
  }

  std::set<std::string> conflict_keys;  // this batch's, not readable from the store yet
  // Keeps `late` apart, never applied, once however often it comes.
  auto keep_conflict = [&](result_conflict::against what, const payment_result& kept,
                           const payment_result& late) {
    auto key = late.pay_id + '\0' + late.channel_id + '\0' + late.status + '\0'
               + late.channel_txn_id + '\0' + std::to_string(late.amount_minor);
    std::string ignored;
    auto seen = db_->Get(rocksdb::ReadOptions{}, conflicts_, key, &ignored);
    if (!seen.ok() && !seen.IsNotFound())
      return seen;
    if (seen.IsNotFound() && conflict_keys.insert(key).second) {
      batch.Put(conflicts_, key, codec::encode_result(late));
      answers.conflicts.push_back({what, kept, late});
    }
    return rocksdb::Status::OK();
  };
  for (size_t i = 0; i < in.results.size(); ++i) {
    auto result = in.results[i];
    auto& answer = answers.results[i];
    std::optional<payment_result> known;
    auto status = view.result(result.pay_id, known);
    if (!status.ok())
      return status;
    std::optional<payment_record> order;
    status = view.order(result.pay_id, order);
    if (!status.ok())
      return status;
    // A duplicate, or too late: the payment is final, or its result was kept
    // flagged (another amount than the order's), which only people settle.
    bool settled = order && is_final(order->status);
    if (settled || (order && known && known->flagged)) {
      answer.changed = false;
      answer.joined = settled;
      answer.result = known ? *known : result;
      // Never applied (a final status never changes), never lost either.
      auto what = settled ? result_conflict::against::final_result
                          : result_conflict::against::flagged_result;
      if (known && contradicts(*known, result))
        if (auto kept = keep_conflict(what, *known, result); !kept.ok())
          return kept;
      continue;
    }
    if (order && !order->routed_channel.empty() && result.channel_id != order->routed_channel) {
      // A channel the payment is not routed to cannot speak for it, unless it
      // took the payment late after saying it had not: either way people
      // must look, and the payment goes on where it is routed.
      payment_result routed;
      routed.pay_id = order->pay_id;
      routed.status = order->status;
      routed.channel_id = order->routed_channel;
      routed.amount_minor = order->order.amount_minor;
      answer.changed = false;
      answer.result = result;
      if (auto kept = keep_conflict(result_conflict::against::route, routed, result); !kept.ok())
        return kept;
      continue;
    }
    if (known && !known->flagged && !order) {  // already waiting for its order
      answer.result = *known;
      // Another answer for it meanwhile: kept apart, as after a final result.
      if (contradicts(*known, result))
        if (auto kept = keep_conflict(result_conflict::against::waiting_result, *known, result);
            !kept.ok())
          return kept;
      continue;
    }
    if (order && order->order.amount_minor != result.amount_minor) {
      result.flagged = true;
      ++answers.flagged;
    }
    batch.Put(results_, result.pay_id, codec::encode_result(result));
    view.put_result(result);
    answer.changed = true;
    answer.result = result;
    if (order && !result.flagged) {
      apply_result(*order, result);
      write_order(*order);
      outbox('R', result.pay_id);
      webhook(*order);
      batch.Delete(dispatch_, result.pay_id);
      answer.joined = true;
      answers.join_latencies_ms.push_back(unix_now_ms() - order->created_at_ms);
    }
  }

  for (const auto& nonce : in.nonces)
    batch.Put(nonces_, nonce_key(nonce.merchant_id, nonce.nonce),
              codec::encode_u64_be(static_cast<uint64_t>(nonce.seen_at_ms)));
  if (batch.Count() == 0)
    return rocksdb::Status::OK();
  auto status = write(sync_, batch);
  if (!status.ok())
    return status;
  next_sequence_ = sequence;
  outbox_size_.fetch_add(outbox_added, std::memory_order_relaxed);
  webhook_backlog_.fetch_add(static_cast<int64_t>(webhooks_put.size()), std::memory_order_relaxed);
  for (const auto& [merchant_id, due] : webhooks_put)
    note_webhook_put(merchant_id, due);
  return status;
}

bool local_store::wants_webhook(const payment_record& record) const {
  return !record.order.notify_url.empty() || !default_webhook_merchants_
         || default_webhook_merchants_->count(record.order.merchant_id) > 0;
}

rocksdb::Status local_store::queue_webhooks_by_merchant() {
  // Entries written before the outbox was kept by merchant: due time first,
  // so their keys start with NUL and sort before every merchant's. Each is
  // moved, in synced batches, under the merchant of its payment; a crash
  // half way leaves the rest to move at the next start.
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, webhooks_)};
  rocksdb::WriteBatch batch;
  rocksdb::WriteOptions synced;
  synced.sync = sync_;  // not held back by store.min_free_bytes: it frees as much as it takes
  int64_t moved = 0;
  for (it->SeekToFirst(); it->Valid() && it->key().starts_with(std::string_view{"\0", 1});
       it->Next()) {
    batch.Delete(webhooks_, it->key());
    webhook_entry entry;
    std::optional<payment_record> record;
    if (it->key().size() >= 8 && codec::decode_webhook(it->value().ToStringView(), entry)) {
      if (auto status = get(entry.pay_id, record); !status.ok())
        return status;  // not read is not absent: nothing is dropped
    }
    if (record) {
      auto due = static_cast<int64_t>(codec::decode_u64_be(it->key().ToStringView()));
      batch.Put(webhooks_, webhook_key(record->order.merchant_id, due, entry.event_id),
                it->value());
      ++moved;
    } else {
      // Nothing to deliver: the notifier dropped such an entry too.
      spdlog::warn("webhook outbox: dropped an entry with no payment to tell of");
    }
    if (batch.Count() >= 2000) {
      auto status = db_->Write(synced, &batch);
      if (!status.ok())
        return status;
      batch.Clear();
    }
  }
  if (!it->status().ok())
    return it->status();
  if (batch.Count() > 0) {
    auto status = db_->Write(synced, &batch);
    if (!status.ok())
      return status;
  }
  if (moved > 0)
    spdlog::info("webhook outbox: {} entries moved to queues by merchant", moved);
  return rocksdb::Status::OK();
}

void local_store::note_webhook_put(const std::string& merchant_id, int64_t due_ms) {
  std::lock_guard<std::mutex> guard{webhook_puts_lock_};
  auto [at, fresh] = webhook_puts_.emplace(merchant_id, due_ms);
  if (!fresh)
    at->second = std::min(at->second, due_ms);
}

rocksdb::Status local_store::due_webhooks(int64_t now_ms,
                                          const std::function<size_t(const std::string&)>& room,
                                          std::vector<webhook_entry>& entries,
                                          std::optional<int64_t>& next_due) {
  entries.clear();
  next_due.reset();
  // Taken before the iterator is made: a put noted here was written before
  // it, and one noted after is sought from on the next read.
  {
    std::lock_guard<std::mutex> guard{webhook_puts_lock_};
    for (const auto& [merchant, due] : webhook_puts_) {
      auto [at, fresh] = webhook_heads_.emplace(merchant, due);
      if (!fresh)
        at->second = std::min(at->second, due);
    }
    webhook_puts_.clear();
  }
  auto now_monotonic = monotonic_now_ms();
  bool walk = webhook_walked_ms_ == 0 || now_monotonic - webhook_walked_ms_ >= webhook_walk_interval_ms;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, webhooks_)};
  // Reads the queue of `merchant`, whose first key (from where it was
  // sought) `it` is at; leaves `it` anywhere.
  auto read_queue = [&](const std::string& merchant) {
    auto prefix = merchant + '\0';
    size_t wanted = room(merchant);
    size_t taken = 0;
    bool first = true;
    for (; it->Valid() && it->key().starts_with(prefix); it->Next()) {
      std::string_view merchant_view;
      int64_t due = 0;
      if (!split_webhook_key(it->key().ToStringView(), merchant_view, due))
        return rocksdb::Status::Corruption("a webhook outbox key of no known layout");
      if (first)
        webhook_heads_[merchant] = due;
      first = false;
      if (due > now_ms || taken >= wanted) {
        if (!next_due || due < *next_due)
          next_due = due;
        break;
      }
      webhook_entry entry;
      if (!codec::decode_webhook(it->value().ToStringView(), entry))
        return rocksdb::Status::Corruption("undecodable webhook entry");
      entry.merchant_id = merchant;
      entry.due_ms = due;
      entries.push_back(std::move(entry));
      ++taken;
    }
    return it->status();
  };
  if (walk) {
    // Every queue from its start: the heads are found again.
    webhook_heads_.clear();
    it->SeekToFirst();
    while (it->Valid()) {
      std::string_view merchant_view;
      int64_t due = 0;
      if (!split_webhook_key(it->key().ToStringView(), merchant_view, due))
        return rocksdb::Status::Corruption("a webhook outbox key of no known layout");
      std::string merchant{merchant_view};
      if (auto status = read_queue(merchant); !status.ok())
        return status;
      it->Seek(merchant + '\1');  // the next merchant's queue
    }
    if (!it->status().ok())
      return it->status();
    webhook_walked_ms_ = now_monotonic;
    return rocksdb::Status::OK();
  }
  for (auto at = webhook_heads_.begin(); at != webhook_heads_.end();) {
    const auto& merchant = at->first;
    it->Seek(webhook_key(merchant, at->second, ""));
    if (!it->status().ok())
      return it->status();
    if (!it->Valid() || !it->key().starts_with(merchant + '\0')) {
      at = webhook_heads_.erase(at);  // nothing queued: found again when a put is noted
      continue;
    }
    if (auto status = read_queue(merchant); !status.ok())
      return status;
    ++at;
  }
  return rocksdb::Status::OK();
}

rocksdb::Status local_store::finish_webhook(const webhook_entry& entry) {
  // Unsynced: lost on a crash, the event is delivered again (at least once).
  rocksdb::WriteBatch batch;
  batch.Delete(webhooks_, webhook_key(entry.merchant_id, entry.due_ms, entry.event_id));
  auto status = write(false, batch);
  if (status.ok())
    webhook_backlog_.fetch_sub(1, std::memory_order_relaxed);
  return status;
}

rocksdb::Status local_store::reschedule_webhook(const webhook_entry& entry, int64_t due_ms) {
  rocksdb::WriteBatch batch;
  batch.Delete(webhooks_, webhook_key(entry.merchant_id, entry.due_ms, entry.event_id));
  auto next = entry;
  next.attempt += 1;
  batch.Put(webhooks_, webhook_key(entry.merchant_id, due_ms, entry.event_id),
            codec::encode_webhook(next));
  auto status = write(false, batch);
  if (status.ok())
    note_webhook_put(entry.merchant_id, due_ms);
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

rocksdb::Status local_store::pending_dispatch(std::vector<payment_record>& records,
                                              size_t limit, const std::string& from_pay_id) {
  records.clear();
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(rocksdb::ReadOptions{}, dispatch_)};
  for (it->Seek(from_pay_id); it->Valid() && records.size() < limit; it->Next()) {
    std::optional<payment_record> record;
    auto status = get(it->key().ToString(), record);
    if (!status.ok())
      return status;
    if (!record || is_final(record->status))
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

rocksdb::Status local_store::get(const std::string& pay_id,
                                 std::optional<payment_record>& record) {
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
                         idempotency_key(merchant_id, merchant_order_no),
                         &pay_id);
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
  std::unique_ptr<rocksdb::Iterator> it{
    db_->NewIterator(rocksdb::ReadOptions{}, outbox_)};
  for (it->Seek(codec::encode_u64_be(from_sequence));
       it->Valid() && entries.size() < limit; it->Next()) {
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

rocksdb::Status local_store::remove_outbox(const std::vector<outbox_entry>& entries) {
  // Point deletes: a range tombstone per batch would slow every later
  // iterator over the outbox. Losing these on a crash only re-sends rows the
  // database ignores, so they need no sync.
  rocksdb::WriteBatch batch;
  for (const auto& entry : entries)
    batch.Delete(outbox_, codec::encode_u64_be(entry.sequence));
  auto status = write(false, batch);
  if (status.ok())
    outbox_size_.fetch_sub(static_cast<int64_t>(entries.size()),
                           std::memory_order_relaxed);
  return status;
}

rocksdb::Status local_store::get_meta(const std::string& name,
                                      std::optional<std::string>& value) {
  std::string bytes;
  auto status = db_->Get(rocksdb::ReadOptions{}, meta_, name, &bytes);
  if (status.IsNotFound()) {
    value.reset();
    return rocksdb::Status::OK();
  }
  if (status.ok())
    value = std::move(bytes);
  return status;
}

rocksdb::Status local_store::put_meta(const std::string& name,
                                      const std::string& value) {
  rocksdb::WriteBatch batch;
  batch.Put(meta_, name, value);
  return write(true, batch);
}

std::string local_store::last_pay_id() {
  std::unique_ptr<rocksdb::Iterator> it{
    db_->NewIterator(rocksdb::ReadOptions{}, orders_)};
  it->SeekToLast();
  return it->Valid() ? it->key().ToString() : std::string{};
}

std::optional<bool> local_store::nonce_seen(std::string_view merchant_id,
                                            std::string_view nonce,
                                            int64_t now_ms) {
  std::string value;
  auto status = db_->Get(rocksdb::ReadOptions{}, nonces_,
                         nonce_key(merchant_id, nonce), &value);
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

rocksdb::Status local_store::scan(
  const std::string& family, const std::string& from,
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

std::map<std::string, uint64_t> local_store::count_keys() {
  std::map<std::string, uint64_t> counts;
  for (size_t i = 0; i < handles_.size(); ++i) {
    std::unique_ptr<rocksdb::Iterator> it{
      db_->NewIterator(rocksdb::ReadOptions{}, handles_[i])};
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

} // namespace paybus
