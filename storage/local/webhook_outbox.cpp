// The local store's webhook outbox: a queue a merchant, read by the
// notifier in rounds (local_store::due_webhooks and what goes with it).

#include <algorithm>
#include <string>

#include <spdlog/spdlog.h>

#include "common/clock.hpp"
#include "storage/local/local_store.hpp"
#include "storage/local/webhook_keys.hpp"

namespace paybus {

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

rocksdb::Status local_store::due_webhooks(int64_t now_ms, int64_t monotonic_ms,
                                          const std::function<size_t(const std::string&)>& room,
                                          webhook_cursor& cursor,
                                          std::vector<webhook_entry>& entries,
                                          std::optional<int64_t>& next_due) {
  entries.clear();
  next_due.reset();
  bool walk = cursor.walk_due(monotonic_ms);
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
        cursor.heads[merchant] = due;
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
    cursor.heads.clear();
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
    cursor.walked_ms = monotonic_ms;
    return rocksdb::Status::OK();
  }
  for (auto at = cursor.heads.begin(); at != cursor.heads.end();) {
    const auto& merchant = at->first;
    it->Seek(webhook_key(merchant, at->second, ""));
    if (!it->status().ok())
      return it->status();
    if (!it->Valid() || !it->key().starts_with(merchant + '\0')) {
      at = cursor.heads.erase(at);  // nothing queued: found again when a put is noted
      continue;
    }
    if (auto status = read_queue(merchant); !status.ok())
      return status;
    ++at;
  }
  return rocksdb::Status::OK();
}

rocksdb::Status local_store::finish_webhook(const webhook_entry& entry) {
  store_changes changes;
  changes.webhook_moves.push_back({entry, std::nullopt});
  return apply(changes);
}

rocksdb::Status local_store::reschedule_webhook(const webhook_entry& entry, int64_t due_ms) {
  store_changes changes;
  auto next = entry;
  next.attempt += 1;
  next.due_ms = due_ms;
  changes.webhook_moves.push_back({entry, next});
  return apply(changes);
}

}  // namespace paybus
