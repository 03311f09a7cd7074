#include <catch2/catch.hpp>

#include "gateway/http.hpp"
#include "gateway/render.hpp"

using namespace paybus;

namespace {

int feed_all(http_request_parser& parser, const std::string& bytes,
             std::vector<http_request>& out) {
  return parser.feed(bytes.data(), bytes.size(), out);
}

}  // namespace

TEST_CASE("pipelined requests come out complete and in order, even byte by byte") {
  std::string bytes = "POST /v1/payments HTTP/1.1\r\nHost: x\r\nX-Paybus-Merchant: demo\r\n"
                      "x-paybus-nonce: n1\r\nContent-Length: 2\r\n\r\n{}"
                      "GET /v1/payments/1?x=y HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  for (size_t step : {bytes.size(), size_t{1}, size_t{7}}) {
    http_request_parser parser{http_limits{}};
    std::vector<http_request> out;
    for (size_t i = 0; i < bytes.size(); i += step)
      REQUIRE(parser.feed(bytes.data() + i, std::min(step, bytes.size() - i), out) == 0);
    REQUIRE(out.size() == 2);
    CHECK(out[0].method == "POST");
    CHECK(out[0].target == "/v1/payments");
    CHECK(out[0].body == "{}");
    CHECK(out[0].merchant == "demo");
    CHECK(out[0].nonce == "n1");
    CHECK(out[0].keep_alive);
    CHECK(out[1].method == "GET");
    CHECK(out[1].target == "/v1/payments/1?x=y");
    CHECK_FALSE(out[1].keep_alive);
  }
}

TEST_CASE("chunked bodies are joined") {
  http_request_parser parser{http_limits{}};
  std::vector<http_request> out;
  REQUIRE(feed_all(parser,
                   "POST /v1/payments HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "2\r\n{\"\r\n3\r\na\":\r\n2\r\n1}\r\n0\r\n\r\n",
                   out)
          == 0);
  REQUIRE(out.size() == 1);
  CHECK(out[0].body == "{\"a\":1}");
}

TEST_CASE("limits and malformed input give the contract's status and stop the parser") {
  http_limits limits;
  limits.max_body_bytes = 100;
  limits.max_header_bytes = 200;
  auto status = [&](const std::string& bytes) {
    http_request_parser parser{limits};
    std::vector<http_request> out;
    int result = feed_all(parser, bytes, out);
    if (result != 0) {
      // Once failed, it stays failed.
      CHECK(feed_all(parser, "GET / HTTP/1.1\r\n\r\n", out) == result);
    }
    return result;
  };
  CHECK(status("POST /v1/payments HTTP/1.1\r\nHost: x\r\n\r\n") == 411);
  CHECK(status("POST /v1/payments HTTP/1.1\r\nContent-Length: 101\r\n\r\n") == 413);
  CHECK(status("POST /v1/payments HTTP/1.1\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'a'))
        == 0);
  CHECK(status("POST /v1/payments HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n"
               + std::string(101, 'a') + "\r\n0\r\n\r\n")
        == 413);
  CHECK(status("GET / HTTP/1.1\r\nX-Long: " + std::string(300, 'h') + "\r\n\r\n") == 431);
  CHECK(status("GET /" + std::string(300, 'p') + " HTTP/1.1\r\n\r\n") == 431);
  CHECK(status("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab") == 400);
  CHECK(
    status("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    == 400);
  CHECK(status("GARBAGE\r\n\r\n") == 400);
  CHECK(status("GET / HTTP/1.1\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n") == 400);
}

TEST_CASE("an authentication header sent twice is flagged") {
  http_request_parser parser{http_limits{}};
  std::vector<http_request> out;
  REQUIRE(feed_all(parser, "GET / HTTP/1.1\r\nX-Paybus-Nonce: a\r\nX-Paybus-Nonce: b\r\n\r\n", out)
          == 0);
  REQUIRE(out.size() == 1);
  CHECK(out[0].auth_duplicated);
}

TEST_CASE("responses and JSON escaping") {
  auto response = http_response(202, "application/json", "{}", true, "Retry-After: 1\r\n");
  CHECK(response
        == "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
           "Connection: keep-alive\r\nRetry-After: 1\r\n\r\n{}");
  CHECK(error_json("invalid_field", "a \"b\"\n\x01")
        == R"({"error":{"code":"invalid_field","message":"a \"b\"\n\u0001"}})");
}

TEST_CASE("the payment object carries the contract's fields") {
  payment_record record;
  record.pay_id = "176378220012300001000000";
  record.order.merchant_order_no = "A-1";
  record.order.amount_minor = 1999;
  record.order.currency = "CNY";
  record.created_at_ms = 1763782200123;
  auto text = render_payment(record);
  CHECK(
    text
    == R"({"pay_id":"176378220012300001000000","merchant_order_no":"A-1","status":"PROCESSING",)"
       R"("amount":1999,"currency":"CNY","created_at":"2025-11-22T03:30:00.123Z","subject":"",)"
       R"("channel":null})");
  record.order.channel_id = "sim-a";
  record.channel_txn_id = "T1";
  record.finished_at_ms = 1763782201000;
  text = render_payment(record);
  CHECK(
    text.find(R"("channel":"sim-a","channel_txn_id":"T1","finished_at":"2025-11-22T03:30:01.000Z")")
    != std::string::npos);
}
