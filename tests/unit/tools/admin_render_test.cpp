// paybus-admin's text for people: aligned tables and name: value lines.

#include <catch2/catch.hpp>

#include "tools/admin_render.hpp"

using namespace paybus;
using json = nlohmann::ordered_json;

TEST_CASE("admin render: rows become an aligned table in the answer's column order") {
  auto text = render_admin_answer(
    "channels", json::parse(R"({"channels": [{"id": "sim-a", "weight": 100, "enabled": true},
                                              {"id": "wallet-long", "weight": 5, "enabled": false}]})"));
  CHECK(text
        == "id           weight  enabled\n"
           "sim-a        100     true\n"
           "wallet-long  5       false\n");
  CHECK(render_admin_answer("audit", json::parse(R"({"entries": []})")) == "(none)\n");
}

TEST_CASE("admin render: objects become aligned name: value lines, nested names joined") {
  auto text = render_admin_answer(
    "payment", json::parse(R"({"pay_id": "P1", "result": {"status": "SUCCEEDED"}, "route": null,
                               "conflicts": [], "degraded": ["webhooks", "db_feed"]})"));
  CHECK(text
        == "pay_id:        P1\n"
           "result.status: SUCCEEDED\n"
           "route:         -\n"
           "conflicts:     -\n"
           "degraded:      webhooks, db_feed\n");
}

TEST_CASE("admin render: degrade lists each switch, help its lines") {
  CHECK(render_admin_answer("degrade",
                            json::parse(R"({"switches": {"webhooks": true, "db_feed": false}})"))
        == "switch    paused\nwebhooks  true\ndb_feed   false\n");
  CHECK(render_admin_answer("help", json::parse(R"({"commands": ["a  b", "c"]})")) == "a  b\nc\n");
}
