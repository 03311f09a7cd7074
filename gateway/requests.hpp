#pragma once

// What the ingress reads out of a request, as pure functions over text:
// which route a request target names, query parameters, and a channel's
// result notification. Unit-tested without sockets or actors.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "messages/types.hpp"

namespace paybus {

/// The resources of the HTTP API (docs/api.md).
enum class route_kind {
  healthz,         // GET /healthz
  readyz,          // GET /readyz
  metrics,         // GET /metrics
  channel_notify,  // POST /v1/channels/{id}/notify
  payments,        // POST or GET /v1/payments
  payment,         // GET /v1/payments/{pay_id}
  reconcile,       // POST /v1/admin/reconcile (loopback, signed with the bus's key)
  not_found,
};

struct route {
  route_kind kind = route_kind::not_found;
  std::string_view channel_id;  // channel_notify: the {id}
  std::string_view pay_id;      // payment: the {pay_id}, as sent
  std::string_view query;       // after '?', if any
  bool method_allowed = false;
  const char* allow = "";  // the Allow header's value when it is not
};

/// The route of `method` and `target` (path and query, as sent).
route route_request(std::string_view method, std::string_view target);

/// Percent-decoding of a query string value ('+' is a space); a '%' not
/// followed by two hex digits stays as it is.
std::string url_decode(std::string_view text);

/// The value of `name` in a query string, if present (the first one).
std::optional<std::string> query_parameter(std::string_view query, std::string_view name);

/// 1 to 32 decimal digits.
bool valid_pay_id_text(std::string_view text);

/// A channel's result notification (API.md section 4) from `channel_id`,
/// received at `now_ms`: fills `result` (source notify; paid_at when it is a
/// real UTC time, else `now_ms`), or says what is wrong with it.
std::optional<std::string> parse_notification(const std::string& body,
                                              const std::string& channel_id, int64_t now_ms,
                                              payment_result& result);

}  // namespace paybus
