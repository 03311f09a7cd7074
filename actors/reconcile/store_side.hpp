#pragma once

// The run's inputs that live in RocksDB: the bus's local store as a
// bus_view, and a scratch RocksDB that sorts a statement's lines by pay_id
// on disk (memory stays bounded whatever the statement's size).

#include <functional>
#include <memory>
#include <string>

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "actors/reconcile/comparison.hpp"

namespace paybus {
class local_store;
}

namespace paybus::reconciliation {

/// The local store, read from the calling thread (RocksDB reads are
/// thread-safe); repairs go through `repair`, which writes through the
/// store's single writer in a running bus, or commits directly in a tool.
class store_bus_view : public bus_view {
public:
  store_bus_view(local_store& store, std::function<bool(const payment_result&)> repair)
    : store_(store), repair_(std::move(repair)) {
  }

  std::optional<bus_payment> lookup(const std::string& pay_id) override;
  void day_payments(const std::string& channel_id, const std::string& day, const std::string& after,
                    const std::function<bool(const indexed_payment&)>& visit) override;
  bool repair(const payment_result& result) override;

private:
  local_store& store_;
  std::function<bool(const payment_result&)> repair_;
};

/// Sorts lines in a scratch RocksDB under `dir` (made here, removed with
/// the sorter): no log, small memtables, the sort done by RocksDB's
/// flushes and its merging iterator.
class scratch_sorter : public line_sorter {
public:
  explicit scratch_sorter(std::string dir);
  ~scratch_sorter() override;

  void add(const statement_line& line) override;
  void sorted(const std::function<bool(const statement_line&)>& visit) override;

private:
  void flush_batch();

  std::string dir_;
  std::unique_ptr<rocksdb::DB> db_;
  std::unique_ptr<rocksdb::WriteBatch> pending_;  // puts waiting for the next write
};

}  // namespace paybus::reconciliation
