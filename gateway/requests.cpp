#include "gateway/requests.hpp"

#include <nlohmann/json.hpp>

#include "common/clock.hpp"
#include "common/text.hpp"

namespace paybus {

route route_request(std::string_view method, std::string_view target) {
  route out;
  auto question = target.find('?');
  auto path = target.substr(0, question);
  out.query = question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
  const bool get = method == "GET";
  const bool post = method == "POST";
  auto only_get = [&](route_kind kind) {
    out.kind = kind;
    out.method_allowed = get;
    out.allow = "GET";
  };
  if (path == "/healthz") {
    only_get(route_kind::healthz);
  } else if (path == "/readyz") {
    only_get(route_kind::readyz);
  } else if (path == "/metrics") {
    only_get(route_kind::metrics);
  } else if (path.size() > 20 && path.substr(0, 13) == "/v1/channels/"
             && path.substr(path.size() - 7) == "/notify") {
    out.kind = route_kind::channel_notify;
    out.channel_id = path.substr(13, path.size() - 20);
    out.method_allowed = post;
    out.allow = "POST";
  } else if (path == "/v1/admin/reconcile") {
    out.kind = route_kind::reconcile;
    out.method_allowed = post;
    out.allow = "POST";
  } else if (path == "/v1/payments") {
    out.kind = route_kind::payments;
    out.method_allowed = get || post;
    out.allow = "GET, POST";
  } else if (path.size() > 13 && path.substr(0, 13) == "/v1/payments/") {
    only_get(route_kind::payment);
    out.pay_id = path.substr(13);
  }
  return out;
}

std::string url_decode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%' && i + 2 < text.size()) {
      auto hex = [](char h) -> int {
        if (h >= '0' && h <= '9')
          return h - '0';
        if (h >= 'a' && h <= 'f')
          return h - 'a' + 10;
        if (h >= 'A' && h <= 'F')
          return h - 'A' + 10;
        return -1;
      };
      int hi = hex(text[i + 1]);
      int lo = hex(text[i + 2]);
      if (hi < 0 || lo < 0) {
        out.push_back(c);
        continue;
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+') {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::optional<std::string> query_parameter(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    auto equals = pair.find('=');
    if (pair.substr(0, equals) == name)
      return url_decode(equals == std::string_view::npos ? std::string_view{}
                                                         : pair.substr(equals + 1));
    if (amp == std::string_view::npos)
      break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

std::optional<std::string> parse_notification(const std::string& body,
                                              const std::string& channel_id, int64_t now_ms,
                                              payment_result& result) {
  auto document = nlohmann::json::parse(body, nullptr, false);
  if (document.is_discarded() || !document.is_object())
    return std::string{"the body must be a JSON object"};
  auto text = [&](const char* name) -> const std::string* {
    auto it = document.find(name);
    return it != document.end() && it->is_string() ? &it->get_ref<const std::string&>() : nullptr;
  };
  const auto* pay_id = text("pay_id");
  if (pay_id == nullptr || !valid_pay_id_text(*pay_id))
    return std::string{"pay_id must be up to 32 digits"};
  const auto* status = text("status");
  if (status == nullptr || (*status != "SUCCEEDED" && *status != "FAILED"))
    return std::string{"status must be SUCCEEDED or FAILED"};
  auto amount = document.find("amount");
  if (amount == document.end() || !amount->is_number_integer() || amount->get<int64_t>() < 0)
    return std::string{"amount must be an integer number of minor units"};
  const auto* txn = text("channel_txn_id");
  if (txn != nullptr && !valid_channel_txn_id(*txn))
    return std::string{"channel_txn_id must be at most 128 bytes, with no control characters"};
  result.pay_id = *pay_id;
  result.status = *status == "SUCCEEDED" ? payment_status::succeeded : payment_status::failed;
  result.channel_id = channel_id;
  result.channel_txn_id = txn != nullptr ? *txn : std::string{};
  result.amount_minor = amount->get<int64_t>();
  result.finished_at_ms = now_ms;
  if (const auto* paid_at = text("paid_at"); paid_at != nullptr)
    parse_rfc3339_ms(*paid_at, result.finished_at_ms);
  result.source = result_source::notify;
  return std::nullopt;
}

bool valid_pay_id_text(std::string_view text) {
  if (text.empty() || text.size() > 32)
    return false;
  for (char c : text)
    if (c < '0' || c > '9')
      return false;
  return true;
}

}  // namespace paybus
