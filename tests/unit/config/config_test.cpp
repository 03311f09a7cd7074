#include <catch2/catch.hpp>

#include "config/settings.hpp"

using namespace paybus;

namespace {

const std::string good = R"(
[node]
data_dir = "var/x"
[http]
listen = "127.0.0.1:18080"
[database]
url = "postgresql:///paybus"
[[merchants]]
id = "demo"
auth = "hmac-sha256"
secret = "demo-secret"
[[merchants]]
id = "shop"
auth = "rsa-sha256"
public_key = "k.pem"
[[channels]]
id = "sim-a"
url = "http://127.0.0.1:9001"
public_key = "sim-a.pub.pem"
weight = 30
)";

std::string error_of(const std::string& text, std::vector<std::string> overrides = {}) {
  settings out;
  std::string error;
  if (parse_settings(text, "test.toml", overrides, out, error))
    return "ok";
  return error;
}

}  // namespace

TEST_CASE("a good config and its defaults") {
  settings out;
  std::string error;
  REQUIRE(parse_settings(good, "test.toml", {}, out, error));
  CHECK(out.data_dir == "var/x");
  CHECK(out.http_host == "127.0.0.1");
  CHECK(out.http_port == 18080);
  CHECK(out.public_url == "http://127.0.0.1:18080");
  CHECK(out.max_body_bytes == 64 * 1024);
  CHECK(out.max_header_bytes == 16 * 1024);
  CHECK(out.store_sync);
  CHECK_FALSE(out.instance_id);
  REQUIRE(out.merchants.size() == 2);
  CHECK(out.merchants[1].public_key_path == "k.pem");
  REQUIRE(out.channels.size() == 1);
  CHECK(out.channels[0].weight == 30);
  CHECK(out.channels[0].settle_ms == 10'000);
}

TEST_CASE("ids: 1 to 64 of [A-Za-z0-9_.-]") {
  settings out;
  std::string error;
  auto id = "Shop_1.a-" + std::string(55, 'z');  // 64
  REQUIRE(
    parse_settings(good, "test.toml", {"merchants.0.id=" + id, "channels.0.id=x"}, out, error));
  CHECK(out.merchants[0].id == id);
  CHECK(out.channels[0].id == "x");
}

TEST_CASE("overrides given with --set read the key's own type") {
  settings out;
  std::string error;
  REQUIRE(
    parse_settings(good, "test.toml",
                   {"http.listen=0.0.0.0:9999", "node.instance_id=12", "store.sync=false",
                    "store.gather_us=2000", "http.gather_us=3000", "merchants.0.secret=12345678",
                    "channels.0.weight=5", "channels.0.settle_ms=0"},
                   out, error));
  CHECK(out.http_port == 9999);
  CHECK(out.instance_id == std::optional<int32_t>{12});
  CHECK_FALSE(out.store_sync);
  CHECK(out.store_gather_us == 2000);
  CHECK(out.http_gather_us == 3000);
  CHECK(out.merchants[0].secret == "12345678");
  CHECK(out.channels[0].weight == 5);
  CHECK(out.channels[0].settle_ms == 0);
}

TEST_CASE("every config error names its key in one line") {
  auto check = [](const std::string& error, const std::string& key) {
    INFO(error);
    CHECK(error.rfind(key, 0) == 0);
    CHECK(error.find('\n') == std::string::npos);
  };
  check(error_of(good, {"http.listen=nonsense"}), "http.listen");
  check(error_of(good, {"http.listen=1.2.3.4:99999"}), "http.listen");
  check(error_of(good, {"node.order_shards=x"}), "node.order_shards");
  check(error_of(good, {"node.order_shards=0"}), "node.order_shards");
  check(error_of(good, {"store.sync=maybe"}), "store.sync");
  check(error_of(good, {"node.unknown=1"}), "node.unknown");
  check(error_of(good, {"merchants.0.auth=md5"}), "merchants.0.auth");
  check(error_of(good, {"merchants.0.secret=short"}), "merchants.0.secret");
  check(error_of(good, {"merchants.1.id=demo"}), "merchants.1.id");
  check(error_of(good, {"merchants.0.id="}), "merchants.0.id");
  check(error_of(good, {"merchants.0.id=a/b"}), "merchants.0.id");
  check(error_of(good, {"channels.0.id=" + std::string(65, 'c')}), "channels.0.id");
  check(error_of(good, {"channels.0.url=ftp://x"}), "channels.0.url");
  check(error_of(good, {"log.level=loud"}), "log.level");
  check(error_of(good + "\n[extra]\nkey = 1\n"), "extra");
  check(error_of(good + "\n[node2]\n"), "node2");
  check(error_of(good, {"channels.0.public_key="}), "channels.0.public_key");
  check(error_of(good, {"channels.0.timeout_ms=5"}), "channels.0.timeout_ms");
  check(error_of(good, {"channels.0.settle_ms=-1"}), "channels.0.settle_ms");
  check(error_of(good, {"channels.0.ca_file=ca.pem"}), "channels.0.ca_file");  // the URL is http://
  check(error_of("[node]\ndata_dir = 5\n"), "node.data_dir");
  check(error_of("[http]\nmax_body_bytes = \"big\"\n"), "http.max_body_bytes");
  check(error_of(
          "[[merchants]]\nid = \"a\"\nauth = \"hmac-sha256\"\nsecret = \"12345678\"\ncolour = 1\n"),
        "merchants.0.colour");
  CHECK(error_of("[node\n").rfind("test.toml:1:", 0) == 0);
  CHECK(error_of(good, {"nonsense"}).find("KEY=VALUE") != std::string::npos);
  check(error_of(good, {"store.min_free_bytes=-1"}), "store.min_free_bytes");
  check(error_of(good, {"store.gather_us=1000001"}), "store.gather_us");
  check(error_of(good, {"http.gather_us=-1"}), "http.gather_us");
  // The API promises retries for at least 24 hours.
  check(error_of(good, {"notify.give_up_after_ms=86399999"}), "notify.give_up_after_ms");
  CHECK(error_of(good, {"notify.give_up_after_ms=86400000"}) == "ok");
  check(error_of(good, {"notify.untargeted_wait_ms=0"}), "notify.untargeted_wait_ms");
}

TEST_CASE("errors that quote the config's own text stay on one line") {
  // Found by fuzz_config: a parser message quoting a newline, a quoted key with one.
  auto parse_error = error_of("[node]\norder_shards =[ t\n\n");
  INFO(parse_error);
  CHECK(parse_error.rfind("test.toml:2:", 0) == 0);
  CHECK(parse_error.find('\n') == std::string::npos);
  auto key_error = error_of("[node]\n\"a\\nb\" = 1\n");
  INFO(key_error);
  CHECK(key_error.find('\n') == std::string::npos);
  CHECK(key_error.find("\\n") != std::string::npos);
}

TEST_CASE("reconciliation keys: defaults, a time of day, statement URLs with the day in them") {
  settings out;
  std::string error;
  REQUIRE(parse_settings(good, "test.toml", {}, out, error));
  CHECK(out.reconciliation_at == "02:30");
  CHECK(out.reconciliation_reports_dir == "var/x/reports");
  CHECK(out.channels.at(0).statement_url == "http://127.0.0.1:9001/v1/statements/{date}");
  REQUIRE(parse_settings(good, "test.toml",
                         {"reconciliation.at=", "channels.0.statement_url=file:///s/{date}.csv"},
                         out, error));
  CHECK(out.reconciliation_at.empty());
  CHECK(out.channels.at(0).statement_url == "file:///s/{date}.csv");
  CHECK(error_of(good, {"reconciliation.at=24:00"}).find("reconciliation.at") != std::string::npos);
  CHECK(error_of(good, {"reconciliation.at=2:30"}).find("reconciliation.at") != std::string::npos);
  CHECK(error_of(good, {"channels.0.statement_url=http://x/statement"}).find("statement_url")
        != std::string::npos);
  CHECK(error_of(good, {"channels.0.statement_url=ftp://x/{date}"}).find("statement_url")
        != std::string::npos);
}

TEST_CASE("admin keys: loopback without TLS, anywhere with all three TLS files, none at all") {
  auto parsed = [](std::vector<std::string> overrides) {
    settings out;
    std::string error;
    INFO(error);
    REQUIRE(parse_settings(good, "test.toml", overrides, out, error));
    return out;
  };
  auto defaults = parsed({});
  CHECK(defaults.admin_host == "127.0.0.1");
  CHECK(defaults.admin_port == 8079);
  CHECK(defaults.admin_certificate.empty());
  CHECK(parsed({"admin.listen=localhost:9000"}).admin_port == 9000);
  CHECK(parsed({"admin.listen=127.0.0.2:9000"}).admin_host == "127.0.0.2");
  CHECK(parsed({"admin.listen=[::1]:9000"}).admin_host == "::1");
  CHECK(parsed({"admin.listen="}).admin_listen.empty());  // no admin console

  for (const auto* open : {"0.0.0.0:8079", "10.0.0.5:8079", "example.com:8079", "128.0.0.1:1"}) {
    auto error = error_of(good, {std::string{"admin.listen="} + open});
    INFO(open);
    CHECK(error.rfind("admin.listen: ", 0) == 0);
    CHECK(error.find("not a loopback address") != std::string::npos);
  }
  CHECK(error_of(good, {"admin.listen=8079"}).rfind("admin.listen: ", 0) == 0);
  // The three TLS files go together, and must be readable.
  const std::string ca = std::string{PAYBUS_TEST_DATA} + "/admin/ca.pem";
  const std::string cert = std::string{PAYBUS_TEST_DATA} + "/admin/alice.pem";
  const std::string key = std::string{PAYBUS_TEST_DATA} + "/admin/alice.key";
  CHECK(error_of(good, {"admin.certificate=" + cert}).rfind("admin.key: ", 0) == 0);
  CHECK(error_of(good, {"admin.certificate=" + cert, "admin.key=" + key}).rfind("admin.cafile: ", 0)
        == 0);
  CHECK(
    error_of(good, {"admin.certificate=/nonexistent.pem", "admin.key=" + key, "admin.cafile=" + ca})
      .rfind("admin.certificate: cannot read", 0)
    == 0);
  auto tls = parsed({"admin.listen=0.0.0.0:8079", "admin.certificate=" + cert, "admin.key=" + key,
                     "admin.cafile=" + ca});
  CHECK(tls.admin_cafile == ca);
}

TEST_CASE("cluster keys: a listen address, seed peers, loopback unless TLS") {
  auto parsed = [](std::vector<std::string> overrides) {
    settings out;
    std::string error;
    INFO(error);
    REQUIRE(parse_settings(good, "test.toml", overrides, out, error));
    return out;
  };
  auto defaults = parsed({});
  CHECK(defaults.cluster_listen.empty());  // alone
  CHECK(defaults.cluster_peers.empty());
  auto joined
    = parsed({"cluster.listen=127.0.0.1:9101", "cluster.peers=127.0.0.1:9101,127.0.0.1:9102"});
  CHECK(joined.cluster_host == "127.0.0.1");
  CHECK(joined.cluster_port == 9101);
  CHECK(joined.cluster_peers == std::vector<std::string>{"127.0.0.1:9101", "127.0.0.1:9102"});
  CHECK(error_of(good, {"cluster.listen=9101"}).rfind("cluster.listen: expected HOST:PORT", 0)
        == 0);
  CHECK(error_of(good, {"cluster.listen=0.0.0.0:9101"}).find("not a loopback address")
        != std::string::npos);
  CHECK(error_of(good, {"cluster.listen=127.0.0.1:9101", "cluster.peers=127.0.0.1:9102,nowhere"})
          .rfind("cluster.peers: entry 1: expected HOST:PORT", 0)
        == 0);
  CHECK(error_of(good, {"cluster.listen=127.0.0.1:9101", "cluster.peers=10.0.0.9:9101"})
          .find("not a loopback address")
        != std::string::npos);
  CHECK(error_of(good, {"cluster.peers=127.0.0.1:9102"}).rfind("cluster.peers: peers need", 0)
        == 0);
  const std::string ca = std::string{PAYBUS_TEST_DATA} + "/admin/ca.pem";
  const std::string cert = std::string{PAYBUS_TEST_DATA} + "/admin/alice.pem";
  const std::string key = std::string{PAYBUS_TEST_DATA} + "/admin/alice.key";
  auto tls = parsed({"cluster.listen=0.0.0.0:9101", "cluster.peers=10.0.0.9:9101",
                     "admin.certificate=" + cert, "admin.key=" + key, "admin.cafile=" + ca});
  CHECK(tls.cluster_host == "0.0.0.0");
}
