#include "actors/reconcile/store_side.hpp"

#include <filesystem>
#include <stdexcept>

#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include "storage/local/local_store.hpp"
#include "storage/local/record_codec.hpp"

namespace paybus::reconciliation {

namespace {

void must(const rocksdb::Status& status, const char* what) {
  if (!status.ok())
    throw std::runtime_error(std::string{what} + ": " + status.ToString());
}

/// The fields of a line, NUL apart (none holds a NUL: they are printable).
std::string encode_line(const statement_line& line) {
  std::string value;
  value.reserve(line.channel_txn_id.size() + line.currency.size() + line.paid_at.size() + 32);
  value.append(line.channel_txn_id).push_back('\0');
  value.append(std::to_string(line.amount_minor)).push_back('\0');
  value.append(line.currency).push_back('\0');
  value.push_back(line.succeeded ? 'S' : 'F');
  value.push_back('\0');
  value.append(std::to_string(line.paid_at_ms)).push_back('\0');
  value.append(line.paid_at);
  return value;
}

void decode_line(std::string_view key, std::string_view value, statement_line& line) {
  auto end = key.size() - 8;
  line.pay_id.assign(key.substr(0, end - 1));
  line.number = codec::decode_u64_be(key.substr(end));
  auto field = [&]() {
    auto stop = value.find('\0');
    auto text = value.substr(0, stop);
    value.remove_prefix(stop == std::string_view::npos ? value.size() : stop + 1);
    return text;
  };
  line.channel_txn_id.assign(field());
  line.amount_minor = std::stoll(std::string{field()});
  line.currency.assign(field());
  line.succeeded = field() == "S";
  line.paid_at_ms = std::stoll(std::string{field()});
  line.paid_at.assign(value);
}

}  // namespace

std::optional<bus_payment> store_bus_view::lookup(const std::string& pay_id) {
  std::optional<payment_record> record;
  must(store_.get(pay_id, record), "read a payment");
  if (!record)
    return std::nullopt;
  bus_payment bus;
  bus.pay_id = pay_id;
  bus.status = record->status;
  bus.amount_minor = record->order.amount_minor;
  bus.currency = record->order.currency;
  bus.routed_channel = record->routed_channel;
  must(store_.get_result(pay_id, bus.result), "read a result");
  return bus;
}

void store_bus_view::day_payments(const std::string& channel_id, const std::string& day,
                                  const std::string& after,
                                  const std::function<bool(const indexed_payment&)>& visit) {
  indexed_payment payment;
  must(store_.succeeded_on(channel_id, day, after,
                           [&](const local_store::succeeded_payment& found) {
                             payment.currency = found.currency;
                             payment.result = found.result;
                             return visit(payment);
                           }),
       "read the succeeded payments of the day");
}

bool store_bus_view::repair(const payment_result& result) {
  return repair_(result);
}

scratch_sorter::scratch_sorter(std::string dir) : dir_(std::move(dir)) {
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
  rocksdb::Options options;
  options.create_if_missing = true;
  options.write_buffer_size = 16u << 20;
  options.max_write_buffer_number = 2;
  options.disable_auto_compactions = true;        // read once, merged by the iterator
  options.compression = rocksdb::kNoCompression;  // scratch, read once: not worth the CPU
  options.max_background_jobs = 1;
  options.max_open_files = 256;
  rocksdb::DB* db = nullptr;
  must(rocksdb::DB::Open(options, dir_, &db), "open the scratch store for sorting");
  db_.reset(db);
  pending_ = std::make_unique<rocksdb::WriteBatch>();
}

scratch_sorter::~scratch_sorter() {
  db_.reset();
  rocksdb::DestroyDB(dir_, rocksdb::Options{});
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

void scratch_sorter::add(const statement_line& line) {
  std::string key = line.pay_id;
  key.push_back('\0');
  key.append(codec::encode_u64_be(line.number));
  pending_->Put(key, encode_line(line));
  if (pending_->Count() >= 1024)
    flush_batch();
}

void scratch_sorter::flush_batch() {
  rocksdb::WriteOptions options;
  options.disableWAL = true;  // scratch: a crash throws the run away
  must(db_->Write(options, pending_.get()), "write the scratch store");
  pending_->Clear();
}

void scratch_sorter::sorted(const std::function<bool(const statement_line&)>& visit) {
  flush_batch();
  rocksdb::ReadOptions options;
  options.readahead_size = 2u << 20;
  std::unique_ptr<rocksdb::Iterator> it{db_->NewIterator(options)};
  statement_line line;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    decode_line(it->key().ToStringView(), it->value().ToStringView(), line);
    if (!visit(line))
      break;
  }
  must(it->status(), "read the scratch store");
}

}  // namespace paybus::reconciliation
