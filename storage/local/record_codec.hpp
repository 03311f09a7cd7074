#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "messages/types.hpp"

namespace paybus::codec {

/// Binary encoding of a payment record as stored in the `orders` column
/// family: a version byte, then length-prefixed strings and fixed-width
/// little-endian integers. Stable on disk; bump the version to change it.
std::string encode_record(const payment_record& record);

/// Returns false (and leaves `record` unspecified) on any damage: wrong
/// version, truncation, trailing bytes. Reads versions 1 and 2.
bool decode_record(std::string_view bytes, payment_record& record);

/// A payment result as stored in the `results` column family.
std::string encode_result(const payment_result& result);
bool decode_result(std::string_view bytes, payment_result& result);

/// A row the database holds otherwise, kept apart.
std::string encode_database_conflict(const database_conflict& conflict);
bool decode_database_conflict(std::string_view bytes, database_conflict& conflict);

/// A merchant notification waiting for delivery.
struct webhook_entry {
  std::string merchant_id;  // from the key
  std::string event_id;
  std::string pay_id;
  int64_t attempt = 0;       // deliveries tried so far
  int64_t first_due_ms = 0;  // when the first delivery was due
  int64_t due_ms = 0;        // from the key
};

std::string encode_webhook(const webhook_entry& entry);
bool decode_webhook(std::string_view bytes, webhook_entry& entry);

/// 8-byte big-endian, so that byte order is numeric order.
std::string encode_u64_be(uint64_t value);
uint64_t decode_u64_be(std::string_view bytes);

}  // namespace paybus::codec
