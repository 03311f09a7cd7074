#pragma once

#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "messages/types.hpp"

namespace paybus {

/// A client error as API.md section 3 spells it.
struct api_error {
  int status = 400;
  std::string code;
  std::string message;
};

struct order_limits {
  int64_t min_amount_minor = 1;
  int64_t max_amount_minor = 1'000'000'000'000;
  size_t max_subject_bytes = 256;
  size_t max_notify_url_bytes = 1024;
  int64_t min_expire_seconds = 60;
  int64_t max_expire_seconds = 7 * 86400;
};

/// Parses and validates a POST /v1/payments body for `merchant_id`. Unknown
/// fields, missing required ones, wrong types and out-of-range values are
/// refused with the contract's code and a message naming the field.
std::optional<api_error> parse_payment_order(std::string_view body, const std::string& merchant_id,
                                             const std::set<std::string>& channels,
                                             const order_limits& limits, payment_order& order);

/// 1-64 of [A-Za-z0-9_.-].
bool valid_merchant_order_no(std::string_view text);

}  // namespace paybus
