#pragma once

// Keys of the local store's webhook outbox (internal to storage/local).

#include <cstdint>
#include <string>
#include <string_view>

#include "storage/local/record_codec.hpp"

namespace paybus {

/// The webhook outbox, a queue a merchant: merchant id, NUL, due time (8
/// bytes big-endian), event id. A round reads each merchant's due entries
/// from the head of its own queue, so one merchant's backlog never hides
/// another's (docs/architecture.md). Merchant ids are never empty and have
/// no NUL; keys of the earlier layout (due time first) start with NUL.
inline std::string webhook_key(const std::string& merchant_id, int64_t due_ms,
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
inline bool split_webhook_key(std::string_view key, std::string_view& merchant_id,
                              int64_t& due_ms) {
  auto end = key.find('\0');
  if (end == 0 || end == std::string_view::npos || key.size() < end + 9)
    return false;
  merchant_id = key.substr(0, end);
  due_ms = static_cast<int64_t>(codec::decode_u64_be(key.substr(end + 1, 8)));
  return true;
}

}  // namespace paybus
