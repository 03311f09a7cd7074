#include "gateway/validation.hpp"

#include <nlohmann/json.hpp>

#include "common/text.hpp"

namespace paybus {

namespace {

api_error invalid(const std::string& field, const std::string& why) {
  return {400, "invalid_field", field + " " + why};
}

}  // namespace

bool valid_merchant_order_no(std::string_view text) {
  if (text.empty() || text.size() > 64)
    return false;
  for (char c : text)
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
          || c == '.' || c == '-'))
      return false;
  return true;
}

std::optional<api_error> parse_payment_order(std::string_view body, const std::string& merchant_id,
                                             const std::set<std::string>& channels,
                                             const order_limits& limits, payment_order& order) {
  auto document = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  if (document.is_discarded())
    return api_error{400, "invalid_json", "the body is not valid JSON"};
  if (!document.is_object())
    return api_error{400, "invalid_json", "the body must be a JSON object"};

  static const std::set<std::string> known{"merchant_order_no", "amount",  "currency",
                                           "subject",           "channel", "notify_url",
                                           "expire_seconds"};
  for (const auto& item : document.items())
    if (!known.count(item.key()))
      return api_error{400, "unknown_field", "unknown field " + item.key()};
  for (const char* required : {"merchant_order_no", "amount", "currency"})
    if (!document.contains(required))
      return api_error{400, "missing_field", std::string{required} + " is required"};

  order = payment_order{};
  order.merchant_id = merchant_id;

  const auto& number = document["merchant_order_no"];
  if (!number.is_string() || !valid_merchant_order_no(number.get_ref<const std::string&>()))
    return invalid("merchant_order_no", "must be 1 to 64 of [A-Za-z0-9_.-]");
  order.merchant_order_no = number.get<std::string>();

  const auto& amount = document["amount"];
  if (!amount.is_number_integer())
    return invalid("amount", "must be an integer number of minor units");
  if (amount.is_number_unsigned()
        ? amount.get<uint64_t>() > static_cast<uint64_t>(limits.max_amount_minor)
        : (amount.get<int64_t>() < limits.min_amount_minor
           || amount.get<int64_t>() > limits.max_amount_minor))
    return invalid("amount", "must be between " + std::to_string(limits.min_amount_minor) + " and "
                               + std::to_string(limits.max_amount_minor));
  order.amount_minor = amount.get<int64_t>();
  if (order.amount_minor < limits.min_amount_minor)
    return invalid("amount", "must be between " + std::to_string(limits.min_amount_minor) + " and "
                               + std::to_string(limits.max_amount_minor));

  const auto& currency = document["currency"];
  bool currency_ok = currency.is_string() && currency.get_ref<const std::string&>().size() == 3;
  if (currency_ok)
    for (char c : currency.get_ref<const std::string&>())
      currency_ok = currency_ok && c >= 'A' && c <= 'Z';
  if (!currency_ok)
    return invalid("currency", "must be 3 capital letters (ISO 4217)");
  order.currency = currency.get<std::string>();

  if (auto it = document.find("subject"); it != document.end()) {
    if (!it->is_string())
      return invalid("subject", "must be a string");
    const auto& subject = it->get_ref<const std::string&>();
    if (subject.size() > limits.max_subject_bytes || !printable_text(subject))
      return invalid("subject", "must be at most " + std::to_string(limits.max_subject_bytes)
                                  + " bytes of printable text");
    order.subject = subject;
  }

  if (auto it = document.find("channel"); it != document.end()) {
    if (!it->is_string())
      return invalid("channel", "must be a string");
    const auto& channel = it->get_ref<const std::string&>();
    if (!channels.count(channel))
      return api_error{400, "unknown_channel",
                       "channel " + channel.substr(0, 64) + " is not configured"};
    order.channel_id = channel;
  }

  if (auto it = document.find("notify_url"); it != document.end()) {
    if (!it->is_string())
      return invalid("notify_url", "must be a string");
    const auto& url = it->get_ref<const std::string&>();
    bool scheme_ok = url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
    if (!scheme_ok || url.size() > limits.max_notify_url_bytes || !printable_text(url)
        || url.find(' ') != std::string::npos)
      return invalid("notify_url", "must be an http:// or https:// URL of at most "
                                     + std::to_string(limits.max_notify_url_bytes) + " bytes");
    order.notify_url = url;
  }

  if (auto it = document.find("expire_seconds"); it != document.end()) {
    if (!it->is_number_integer())
      return invalid("expire_seconds", "must be an integer");
    bool in_range = !it->is_number_unsigned() || it->get<uint64_t>() <= 1'000'000'000ull;
    int64_t seconds = in_range ? it->get<int64_t>() : 0;
    if (!in_range || seconds < limits.min_expire_seconds || seconds > limits.max_expire_seconds)
      return invalid("expire_seconds", "must be between "
                                         + std::to_string(limits.min_expire_seconds) + " and "
                                         + std::to_string(limits.max_expire_seconds));
    order.expire_seconds = seconds;
  }
  return std::nullopt;
}

}  // namespace paybus
