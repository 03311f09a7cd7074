#include <catch2/catch.hpp>

#include "common/text.hpp"
#include "gateway/validation.hpp"

using namespace paybus;

namespace {

std::optional<api_error> parse(const std::string& body, payment_order& order) {
  static const std::set<std::string> channels{"sim-a", "sim-b"};
  return parse_payment_order(body, "demo", channels, order_limits{}, order);
}

std::string code_of(const std::string& body) {
  payment_order order;
  auto error = parse(body, order);
  return error ? error->code : "ok";
}

std::string with(const std::string& field_json) {
  return R"({"merchant_order_no":"A-1","amount":100,"currency":"CNY",)" + field_json + "}";
}

}  // namespace

TEST_CASE("a full valid body becomes a payment order") {
  payment_order order;
  auto error
    = parse(R"({"merchant_order_no":"A-1001","amount":1999,"currency":"CNY","subject":"coffee",
    "channel":"sim-a","notify_url":"http://127.0.0.1/n","expire_seconds":600})",
            order);
  REQUIRE_FALSE(error);
  CHECK(order.merchant_id == "demo");
  CHECK(order.merchant_order_no == "A-1001");
  CHECK(order.amount_minor == 1999);
  CHECK(order.currency == "CNY");
  CHECK(order.subject == "coffee");
  CHECK(order.channel_id == "sim-a");
  CHECK(order.notify_url == "http://127.0.0.1/n");
  CHECK(order.expire_seconds == 600);
}

TEST_CASE("omitted optional fields take their defaults") {
  payment_order order;
  REQUIRE_FALSE(parse(R"({"merchant_order_no":"A-1","amount":1,"currency":"USD"})", order));
  CHECK(order.subject.empty());
  CHECK(order.channel_id.empty());
  CHECK(order.notify_url.empty());
  CHECK(order.expire_seconds == default_expire_seconds);
}

TEST_CASE("malformed JSON and non-objects are invalid_json") {
  CHECK(code_of("") == "invalid_json");
  CHECK(code_of("{") == "invalid_json");
  CHECK(code_of("[]") == "invalid_json");
  CHECK(code_of("\"x\"") == "invalid_json");
  CHECK(code_of("{\"a\":\"\xff\"}") == "invalid_json");
}

TEST_CASE("required fields, unknown fields") {
  CHECK(code_of(R"({"amount":1,"currency":"CNY"})") == "missing_field");
  CHECK(code_of(R"({"merchant_order_no":"A","currency":"CNY"})") == "missing_field");
  CHECK(code_of(R"({"merchant_order_no":"A","amount":1})") == "missing_field");
  CHECK(code_of(with(R"("colour":"red")")) == "unknown_field");
}

TEST_CASE("every field's range and type") {
  payment_order order;
  auto error = parse(with(R"("subject":5)"), order);
  REQUIRE(error);
  CHECK(error->status == 400);
  CHECK(error->code == "invalid_field");
  CHECK(error->message.find("subject") != std::string::npos);

  CHECK(code_of(R"({"merchant_order_no":"","amount":1,"currency":"CNY"})") == "invalid_field");
  CHECK(code_of(R"({"merchant_order_no":")" + std::string(65, 'a')
                + R"(","amount":1,"currency":"CNY"})")
        == "invalid_field");
  CHECK(code_of(R"({"merchant_order_no":")" + std::string(64, 'a')
                + R"(","amount":1,"currency":"CNY"})")
        == "ok");
  CHECK(code_of(R"({"merchant_order_no":"a/b","amount":1,"currency":"CNY"})") == "invalid_field");
  CHECK(code_of(R"({"merchant_order_no":"a.b_c-D9","amount":1,"currency":"CNY"})") == "ok");
  for (const char* amount : {"0", "-1", "1000000000001", "1.5", "1e3", "\"5\"", "true", "null",
                             "18446744073709551615", "-9223372036854775808"})
    CHECK(
      code_of(std::string{R"({"merchant_order_no":"A","currency":"CNY","amount":)"} + amount + "}")
      == "invalid_field");
  CHECK(code_of(R"({"merchant_order_no":"A","currency":"CNY","amount":1000000000000})") == "ok");
  CHECK(code_of(R"({"merchant_order_no":"A","currency":"CNY","amount":1})") == "ok");
  for (const char* currency : {"\"cny\"", "\"CN\"", "\"CNYY\"", "156", "\"C1Y\""})
    CHECK(
      code_of(std::string{R"({"merchant_order_no":"A","amount":1,"currency":)"} + currency + "}")
      == "invalid_field");
  CHECK(code_of(with("\"subject\":\"" + std::string(257, 'x') + "\"")) == "invalid_field");
  CHECK(code_of(with("\"subject\":\"" + std::string(256, 'x') + "\"")) == "ok");
  CHECK(code_of(with(R"("subject":"a\u0001b")")) == "invalid_field");
  CHECK(code_of(with(R"("subject":"咖啡")")) == "ok");
  CHECK(code_of(with(R"("channel":"sim-c")")) == "unknown_channel");
  CHECK(code_of(with(R"("channel":3)")) == "invalid_field");
  CHECK(code_of(with(R"("notify_url":"ftp://x")")) == "invalid_field");
  CHECK(code_of(with(R"("notify_url":"http://a b")")) == "invalid_field");
  CHECK(code_of(with(R"("notify_url":"https://merchant.example/notify")")) == "ok");
  CHECK(code_of(with(R"("expire_seconds":59)")) == "invalid_field");
  CHECK(code_of(with(R"("expire_seconds":604801)")) == "invalid_field");
  CHECK(code_of(with(R"("expire_seconds":60)")) == "ok");
  CHECK(code_of(with(R"("expire_seconds":"900")")) == "invalid_field");
  CHECK(code_of(with(R"("expire_seconds":18446744073709551615)")) == "invalid_field");
}

TEST_CASE("a channel's transaction id: at most 128 bytes of printable text, never cut") {
  CHECK(valid_channel_txn_id(""));
  CHECK(valid_channel_txn_id("sim-a-000042"));
  CHECK(valid_channel_txn_id("交易-42"));
  CHECK(valid_channel_txn_id(std::string(128, 'x')));
  CHECK_FALSE(valid_channel_txn_id(std::string(129, 'x')));
  // 43 three-byte characters are 129 bytes: refused whole, not cut inside one.
  std::string wide;
  for (int i = 0; i < 43; ++i)
    wide += "交";
  CHECK_FALSE(valid_channel_txn_id(wide));
  CHECK_FALSE(valid_channel_txn_id(std::string("T\0X", 3)));  // PostgreSQL refuses NUL in text
  CHECK_FALSE(valid_channel_txn_id("T\nX"));
  CHECK_FALSE(valid_channel_txn_id("T\x7fX"));
}
