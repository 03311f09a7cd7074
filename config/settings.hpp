#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace paybus {

struct merchant_settings {
  std::string id;
  std::string auth;             // "hmac-sha256" or "rsa-sha256"
  std::string secret;           // hmac only; never logged
  std::string public_key_path;  // rsa only
  std::string notify_url;       // optional default webhook target
};

struct channel_settings {
  std::string id;
  std::string url;
  std::string public_key_path;
  // https only: the certificates that verify the channel's (else the system's).
  std::string ca_file;
  int64_t weight = 100;
  int64_t timeout_ms = 3000;
  int64_t concurrency = 4;
  int64_t breaker_failures = 5;
  int64_t breaker_open_ms = 5000;
  // A query's NOT_FOUND is believed only this long after the last pay request left.
  int64_t settle_ms = 10'000;
  // Where its statements are: "" is {url}/v1/statements/{date}; an http(s)
  // URL or "file:///path/{date}.csv" with "{date}" in it.
  std::string statement_url;
};

/// Every configuration key of paybusd, with its default. docs/configuration.md
/// describes each one.
struct settings {
  // [node]
  std::string data_dir = "var/paybus";
  std::optional<int32_t> instance_id;  // used only if the registry is unreachable at first start
  int32_t order_shards = 2;
  // [http]
  std::string http_host = "127.0.0.1";
  uint16_t http_port = 8080;
  std::string public_url;
  int64_t max_connections = 10000;
  int64_t max_header_bytes = 16 * 1024;
  int64_t max_body_bytes = 64 * 1024;
  int64_t header_timeout_ms = 10'000;
  int64_t body_timeout_ms = 10'000;
  int64_t idle_timeout_ms = 60'000;
  int64_t max_inflight = 8192;
  int64_t max_pipeline = 64;
  int64_t http_gather_us = 0;
  int64_t request_timeout_ms = 10'000;
  int64_t timestamp_window_seconds = 300;
  // [admin]: "" publishes no admin actor
  std::string admin_listen = "127.0.0.1:8079";
  std::string admin_host;  // from admin_listen
  uint16_t admin_port = 0;
  std::string admin_certificate;  // PEM; with key and cafile: mutual TLS
  std::string admin_key;
  std::string admin_cafile;
  // [cluster]: "" = alone. Peers use the admin port's TLS settings.
  std::string cluster_listen;
  std::string cluster_host;  // from cluster_listen
  uint16_t cluster_port = 0;
  std::vector<std::string> cluster_peers;  // HOST:PORT seeds; the rest from paybus_instances
  // [database]
  std::string database_url = "postgresql:///paybus?host=/var/run/postgresql";
  int64_t database_batch_rows = 500;
  int64_t database_gather_ms = 100;
  int64_t database_connect_timeout_ms = 3000;
  int64_t database_statement_timeout_ms = 5000;
  // [signing]
  std::string signing_private_key;
  // [store]
  bool store_sync = true;
  int64_t store_max_batch_writes = 2048;
  int64_t store_gather_us = 0;
  int64_t store_min_free_bytes = 64 << 20;
  // [payments]
  int64_t min_expire_seconds = 60;
  int64_t max_driving_in_memory = 50'000;
  // [notify]
  int64_t notify_workers = 64;
  int64_t notify_timeout_ms = 5000;
  int64_t notify_retry_base_ms = 1000;
  int64_t notify_retry_max_ms = 3'600'000;
  int64_t notify_give_up_after_ms = 25 * 3'600'000LL;
  int64_t notify_untargeted_wait_ms = 60'000;
  // [reconciliation]
  std::string reconciliation_at = "02:30";  // UTC time of day; "" = no daily run
  std::string reconciliation_reports_dir;   // "" = <data_dir>/reports
  // [actors]
  std::string scheduler_policy = "sharing";  // "sharing" or "stealing"
  int64_t scheduler_threads = 1;             // 0: one per core
  // [log]
  std::string log_level = "info";

  std::vector<merchant_settings> merchants;
  std::vector<channel_settings> channels;
};

/// Reads `path` and applies `overrides` ("dotted.key=value", value read as
/// the key's type). Returns false with one line naming the key in `error`.
/// Unknown keys, in the file or in an override, are errors too.
bool load_settings(const std::string& path, const std::vector<std::string>& overrides,
                   settings& out, std::string& error);

/// Same, from TOML text (tests).
bool parse_settings(const std::string& text, const std::string& source_name,
                    const std::vector<std::string>& overrides, settings& out, std::string& error);

/// Splits "host:port"; false if malformed.
/// Whether `host` names this machine only: localhost, 127.0.0.0/8 or ::1.
bool is_loopback_host(const std::string& host);

bool split_host_port(const std::string& text, std::string& host, uint16_t& port);

}  // namespace paybus
