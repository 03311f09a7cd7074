// The protocol's words for the enums used inside the process.

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "messages/types.hpp"

using namespace paybus;

TEST_CASE("statuses and sources read back from their words, and refuse other words") {
  for (auto status : {payment_status::processing, payment_status::succeeded, payment_status::failed,
                      payment_status::closed})
    CHECK(parse_payment_status(to_string(status)) == status);
  for (auto source : {result_source::channel, result_source::notify, result_source::query,
                      result_source::reconciliation})
    CHECK(parse_result_source(to_string(source)) == source);
  CHECK_FALSE(parse_payment_status("succeeded"));
  CHECK_FALSE(parse_payment_status(""));
  CHECK_FALSE(parse_result_source("CHANNEL"));
  CHECK(is_final_status(payment_status::closed));
  CHECK_FALSE(is_final_status(payment_status::processing));
}

TEST_CASE("JSON carries a status or a source as its word, never as a number") {
  nlohmann::json body{{"status", payment_status::closed},
                      {"source", result_source::notify},
                      {"said", channel_status::not_found}};
  CHECK(body.dump() == R"({"said":"NOT_FOUND","source":"notify","status":"CLOSED"})");
}
