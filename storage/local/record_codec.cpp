#include "storage/local/record_codec.hpp"

#include <cstring>

namespace paybus::codec {

namespace {

// 2 added routed_channel; 3 added held, and is written only for a record
// whose channel holds it (the others read the same as before).
constexpr uint8_t record_version = 2;
constexpr uint8_t held_record_version = 3;
constexpr uint8_t result_version = 1;
constexpr uint32_t max_field_bytes = 1u << 20;

void put_string(std::string& out, const std::string& value) {
  uint32_t size = static_cast<uint32_t>(value.size());
  for (int i = 0; i < 4; ++i)
    out.push_back(static_cast<char>((size >> (8 * i)) & 0xff));
  out.append(value);
}

// Statuses and sources are kept as their words, as the store has always
// held them: a store written before they were enums reads the same.
void put_string(std::string& out, const char* value) {
  put_string(out, std::string{value});
}

void put_i64(std::string& out, int64_t value) {
  uint64_t bits = static_cast<uint64_t>(value);
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
}

class reader {
public:
  explicit reader(std::string_view bytes) : bytes_(bytes) {
  }

  bool string(std::string& value) {
    if (remaining() < 4)
      return false;
    uint32_t size = 0;
    for (int i = 0; i < 4; ++i)
      size |= static_cast<uint32_t>(static_cast<uint8_t>(bytes_[offset_ + i])) << (8 * i);
    offset_ += 4;
    if (size > max_field_bytes || remaining() < size)
      return false;
    value.assign(bytes_.data() + offset_, size);
    offset_ += size;
    return true;
  }

  /// A word of the protocol (a status, a source), as `parse` reads it.
  template <class Enum, class Parse>
  bool word(Enum& value, Parse parse) {
    std::string text;
    if (!string(text))
      return false;
    auto parsed = parse(text);
    if (!parsed)
      return false;
    value = *parsed;
    return true;
  }

  bool i64(int64_t& value) {
    if (remaining() < 8)
      return false;
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i)
      bits |= static_cast<uint64_t>(static_cast<uint8_t>(bytes_[offset_ + i])) << (8 * i);
    offset_ += 8;
    value = static_cast<int64_t>(bits);
    return true;
  }

  bool u8(uint8_t& value) {
    if (remaining() < 1)
      return false;
    value = static_cast<uint8_t>(bytes_[offset_++]);
    return true;
  }

  bool at_end() const {
    return offset_ == bytes_.size();
  }

private:
  size_t remaining() const {
    return bytes_.size() - offset_;
  }

  std::string_view bytes_;
  size_t offset_ = 0;
};

}  // namespace

std::string encode_record(const payment_record& record) {
  std::string out;
  out.reserve(160);
  out.push_back(static_cast<char>(record_version));
  put_string(out, record.pay_id);
  put_string(out, record.order.merchant_id);
  put_string(out, record.order.merchant_order_no);
  put_i64(out, record.order.amount_minor);
  put_string(out, record.order.currency);
  put_string(out, record.order.subject);
  put_string(out, record.order.channel_id);
  put_string(out, record.order.notify_url);
  put_i64(out, record.order.expire_seconds);
  put_i64(out, record.instance_id);
  put_i64(out, record.created_at_ms);
  put_string(out, to_string(record.status));
  put_string(out, record.channel_txn_id);
  put_i64(out, record.finished_at_ms);
  put_string(out, record.routed_channel);
  if (record.held) {
    out[0] = static_cast<char>(held_record_version);
    out.push_back(1);
  }
  return out;
}

std::string encode_result(const payment_result& result) {
  std::string out;
  out.reserve(120);
  out.push_back(static_cast<char>(result_version));
  put_string(out, result.pay_id);
  put_string(out, to_string(result.status));
  put_string(out, result.channel_id);
  put_string(out, result.channel_txn_id);
  put_i64(out, result.amount_minor);
  put_i64(out, result.finished_at_ms);
  put_string(out, to_string(result.source));
  out.push_back(result.flagged ? 1 : 0);
  return out;
}

bool decode_result(std::string_view bytes, payment_result& result) {
  reader in{bytes};
  uint8_t version = 0;
  uint8_t flagged = 0;
  bool ok = in.u8(version) && version == result_version && in.string(result.pay_id)
            && in.word(result.status, parse_payment_status) && is_final_status(result.status)
            && in.string(result.channel_id) && in.string(result.channel_txn_id)
            && in.i64(result.amount_minor) && in.i64(result.finished_at_ms)
            && in.word(result.source, parse_result_source) && in.u8(flagged) && flagged <= 1
            && in.at_end();
  result.flagged = flagged == 1;
  return ok;
}

bool decode_record(std::string_view bytes, payment_record& record) {
  reader in{bytes};
  uint8_t version = 0;
  int64_t instance_id = 0;
  uint8_t held = 0;
  record.routed_channel.clear();
  bool ok = in.u8(version) && version >= 1 && version <= held_record_version
            && in.string(record.pay_id) && in.string(record.order.merchant_id)
            && in.string(record.order.merchant_order_no) && in.i64(record.order.amount_minor)
            && in.string(record.order.currency) && in.string(record.order.subject)
            && in.string(record.order.channel_id) && in.string(record.order.notify_url)
            && in.i64(record.order.expire_seconds) && in.i64(instance_id)
            && in.i64(record.created_at_ms) && in.word(record.status, parse_payment_status)
            && in.string(record.channel_txn_id) && in.i64(record.finished_at_ms)
            && (version == 1 || in.string(record.routed_channel))
            && (version < held_record_version || (in.u8(held) && held == 1)) && in.at_end();
  record.instance_id = static_cast<int32_t>(instance_id);
  record.held = held == 1;
  return ok;
}

std::string encode_database_conflict(const database_conflict& conflict) {
  std::string out;
  out.push_back(1);
  put_string(out, conflict.table);
  put_string(out, conflict.pay_id);
  put_string(out, conflict.ours);
  put_string(out, conflict.theirs);
  put_i64(out, conflict.found_at_ms);
  return out;
}

bool decode_database_conflict(std::string_view bytes, database_conflict& conflict) {
  reader in{bytes};
  uint8_t version = 0;
  return in.u8(version) && version == 1 && in.string(conflict.table) && in.string(conflict.pay_id)
         && in.string(conflict.ours) && in.string(conflict.theirs) && in.i64(conflict.found_at_ms)
         && in.at_end();
}

std::string encode_webhook(const webhook_entry& entry) {
  std::string out;
  out.push_back(1);
  put_string(out, entry.event_id);
  put_string(out, entry.pay_id);
  put_i64(out, entry.attempt);
  put_i64(out, entry.first_due_ms);
  return out;
}

bool decode_webhook(std::string_view bytes, webhook_entry& entry) {
  reader in{bytes};
  uint8_t version = 0;
  return in.u8(version) && version == 1 && in.string(entry.event_id) && in.string(entry.pay_id)
         && in.i64(entry.attempt) && in.i64(entry.first_due_ms) && in.at_end();
}

std::string encode_u64_be(uint64_t value) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i) {
    out[static_cast<size_t>(i)] = static_cast<char>(value & 0xff);
    value >>= 8;
  }
  return out;
}

uint64_t decode_u64_be(std::string_view bytes) {
  uint64_t value = 0;
  for (size_t i = 0; i < 8 && i < bytes.size(); ++i)
    value = (value << 8) | static_cast<uint8_t>(bytes[i]);
  return value;
}

}  // namespace paybus::codec
