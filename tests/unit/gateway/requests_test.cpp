#include <catch2/catch.hpp>

#include "gateway/requests.hpp"

using namespace paybus;

TEST_CASE("requests: a target names its route, its parameters and the methods it takes") {
  auto to = route_request("GET", "/v1/payments/17637822001230000100000001");
  CHECK(to.kind == route_kind::payment);
  CHECK(to.pay_id == "17637822001230000100000001");
  CHECK(to.method_allowed);
  to = route_request("POST", "/v1/payments/1");
  CHECK(to.kind == route_kind::payment);
  CHECK_FALSE(to.method_allowed);
  CHECK(std::string{to.allow} == "GET");
  to = route_request("GET", "/v1/payments?merchant_order_no=A-1&x=2");
  CHECK(to.kind == route_kind::payments);
  CHECK(to.query == "merchant_order_no=A-1&x=2");
  CHECK(route_request("POST", "/v1/payments").method_allowed);
  CHECK_FALSE(route_request("DELETE", "/v1/payments").method_allowed);
  CHECK(std::string{route_request("PUT", "/v1/payments").allow} == "GET, POST");
  to = route_request("POST", "/v1/channels/sim-a/notify");
  CHECK(to.kind == route_kind::channel_notify);
  CHECK(to.channel_id == "sim-a");
  CHECK_FALSE(route_request("GET", "/v1/channels/sim-a/notify").method_allowed);
  CHECK(route_request("GET", "/healthz").kind == route_kind::healthz);
  CHECK(route_request("GET", "/readyz?x").kind == route_kind::readyz);
  CHECK_FALSE(route_request("POST", "/metrics").method_allowed);
  CHECK(route_request("GET", "/v1/payments/").kind == route_kind::not_found);
  CHECK(route_request("GET", "/v1/channels//notify").kind == route_kind::not_found);
  CHECK(route_request("GET", "/").kind == route_kind::not_found);
  CHECK(route_request("GET", "").kind == route_kind::not_found);
}

TEST_CASE("requests: query values are percent-decoded, the first of a name wins") {
  CHECK(url_decode("A%2D1+x") == "A-1 x");
  CHECK(url_decode("100%") == "100%");
  CHECK(url_decode("%zz%4") == "%zz%4");
  CHECK(url_decode("%41%61") == "Aa");
  CHECK(query_parameter("merchant_order_no=A-1", "merchant_order_no") == std::string{"A-1"});
  CHECK(query_parameter("a=1&merchant_order_no=B%2E2&merchant_order_no=C", "merchant_order_no")
        == std::string{"B.2"});
  CHECK(query_parameter("merchant_order_no", "merchant_order_no") == std::string{});
  CHECK_FALSE(query_parameter("merchant_order=1", "merchant_order_no"));
  CHECK_FALSE(query_parameter("", "merchant_order_no"));
}

TEST_CASE("requests: a pay_id is 1 to 32 digits") {
  CHECK(valid_pay_id_text("1"));
  CHECK(valid_pay_id_text(std::string(32, '9')));
  CHECK_FALSE(valid_pay_id_text(std::string(33, '9')));
  CHECK_FALSE(valid_pay_id_text(""));
  CHECK_FALSE(valid_pay_id_text("12a"));
  CHECK_FALSE(valid_pay_id_text("-1"));
}

TEST_CASE("requests: a channel's notification becomes a result, or a clear refusal") {
  payment_result result;
  auto problem = parse_notification(
    R"({"pay_id":"100","channel_txn_id":"T-1","status":"SUCCEEDED","amount":1999,)"
    R"("paid_at":"2025-11-22T03:30:00.123Z"})",
    "sim-a", 5, result);
  REQUIRE_FALSE(problem);
  CHECK(result.pay_id == "100");
  CHECK(result.status == payment_status::succeeded);
  CHECK(result.channel_id == "sim-a");
  CHECK(result.channel_txn_id == "T-1");
  CHECK(result.amount_minor == 1999);
  CHECK(result.finished_at_ms == 1763782200123);
  CHECK(result.source == result_source::notify);
  // paid_at that is no real time: the time it arrived.
  REQUIRE_FALSE(parse_notification(
    R"({"pay_id":"1","status":"FAILED","amount":0,"paid_at":"soon"})", "sim-a", 42, result));
  CHECK(result.finished_at_ms == 42);
  CHECK(result.channel_txn_id.empty());
  auto refused = [](const char* body) {
    payment_result ignored;
    return parse_notification(body, "sim-a", 1, ignored).has_value();
  };
  CHECK(refused("[]"));
  CHECK(refused("not json"));
  CHECK(refused(R"({"status":"SUCCEEDED","amount":1})"));
  CHECK(refused(R"({"pay_id":"12x","status":"SUCCEEDED","amount":1})"));
  CHECK(refused(R"({"pay_id":"1","status":"ACCEPTED","amount":1})"));
  CHECK(refused(R"({"pay_id":"1","status":"SUCCEEDED","amount":-1})"));
  CHECK(refused(R"({"pay_id":"1","status":"SUCCEEDED","amount":1.5})"));
  CHECK(refused(R"({"pay_id":"1","status":"SUCCEEDED","amount":1,"channel_txn_id":"a\u0000b"})"));
}
