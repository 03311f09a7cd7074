// libFuzzer: JSON body validation of POST /v1/payments. Whatever the body,
// the answer is either an order inside every limit of API.md section 3 or a
// 400 with one of the contract's codes.

#include <cstdint>
#include <set>
#include <string>

#include "gateway/validation.hpp"
#include "tests/fuzz/require.hpp"

using paybus::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body{reinterpret_cast<const char*>(data), size};
  static const std::set<std::string> channels{"sim-a", "sim-b"};
  paybus::order_limits limits;
  paybus::payment_order order;
  auto error = paybus::parse_payment_order(body, "demo", channels, limits, order);
  if (error) {
    require(error->status == 400);
    require(error->code == "invalid_json" || error->code == "invalid_field"
            || error->code == "missing_field" || error->code == "unknown_field"
            || error->code == "unknown_channel");
    require(!error->message.empty());
    return 0;
  }
  require(order.merchant_id == "demo");
  require(paybus::valid_merchant_order_no(order.merchant_order_no));
  require(order.amount_minor >= limits.min_amount_minor
          && order.amount_minor <= limits.max_amount_minor);
  require(order.currency.size() == 3);
  for (char c : order.currency)
    require(c >= 'A' && c <= 'Z');
  require(order.subject.size() <= limits.max_subject_bytes);
  require(order.notify_url.size() <= limits.max_notify_url_bytes);
  require(order.channel_id.empty() || channels.count(order.channel_id) == 1);
  require(order.expire_seconds >= limits.min_expire_seconds
          && order.expire_seconds <= limits.max_expire_seconds);
  return 0;
}
