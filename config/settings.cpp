#include "config/settings.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <cctype>
#include <cstring>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>

namespace paybus {

namespace {

/// Reads typed keys by dotted path from a TOML document, applying --set
/// overrides, remembering which keys exist so that unknown ones are refused.
class key_reader {
public:
  key_reader(toml::table& root, std::map<std::string, std::string> overrides)
    : root_(root), overrides_(std::move(overrides)) {
  }

  bool failed() const {
    return !error_.empty();
  }

  const std::string& error() const {
    return error_;
  }

  void fail(const std::string& key, const std::string& what) {
    if (error_.empty())
      error_ = key + ": " + what;
  }

  void string(const std::string& key, std::string& value) {
    known_.insert(key);
    if (auto it = overrides_.find(key); it != overrides_.end()) {
      value = it->second;
      return;
    }
    if (auto* node = find(key)) {
      if (auto text = node->value<std::string>(); text && node->is_string())
        value = *text;
      else
        fail(key, "expected a string");
    }
  }

  void integer(const std::string& key, int64_t& value, int64_t minimum, int64_t maximum) {
    known_.insert(key);
    int64_t read = value;
    if (auto it = overrides_.find(key); it != overrides_.end()) {
      char* end = nullptr;
      errno = 0;
      read = std::strtoll(it->second.c_str(), &end, 10);
      if (it->second.empty() || *end != '\0' || errno != 0)
        return fail(key, "expected an integer, got '" + it->second + "'");
    } else if (auto* node = find(key)) {
      if (!node->is_integer())
        return fail(key, "expected an integer");
      read = *node->value<int64_t>();
    }
    if (read < minimum || read > maximum)
      return fail(key, "must be between " + std::to_string(minimum) + " and "
                         + std::to_string(maximum) + ", got " + std::to_string(read));
    value = read;
  }

  void boolean(const std::string& key, bool& value) {
    known_.insert(key);
    if (auto it = overrides_.find(key); it != overrides_.end()) {
      if (it->second == "true")
        value = true;
      else if (it->second == "false")
        value = false;
      else
        fail(key, "expected true or false, got '" + it->second + "'");
      return;
    }
    if (auto* node = find(key)) {
      if (!node->is_boolean())
        return fail(key, "expected true or false");
      value = *node->value<bool>();
    }
  }

  /// An array of strings; given with --set as a comma-separated list.
  void strings(const std::string& key, std::vector<std::string>& value) {
    known_.insert(key);
    if (auto it = overrides_.find(key); it != overrides_.end()) {
      value.clear();
      std::string_view rest = it->second;
      while (!rest.empty()) {
        auto comma = rest.find(',');
        value.emplace_back(rest.substr(0, comma));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
      return;
    }
    if (auto* node = find(key)) {
      auto* array = node->as_array();
      if (array == nullptr)
        return fail(key, "expected an array of strings");
      value.clear();
      for (size_t i = 0; i < array->size(); ++i) {
        auto text = array->get(i)->value<std::string>();
        if (!text || !array->get(i)->is_string())
          return fail(key, "expected an array of strings");
        value.push_back(*text);
      }
    }
  }

  bool present(const std::string& key) {
    return overrides_.count(key) > 0 || find(key) != nullptr;
  }

  /// Number of entries of an array of tables, e.g. [[merchants]].
  size_t table_array_size(const std::string& key) {
    known_.insert(key);
    auto* node = find(key);
    if (node == nullptr)
      return 0;
    auto* array = node->as_array();
    if (array == nullptr || !array->is_array_of_tables()) {
      fail(key, "expected an array of tables ([[" + key + "]])");
      return 0;
    }
    return array->size();
  }

  /// Refuses keys in the file or in overrides that nothing read.
  void refuse_unknown() {
    for (const auto& [key, value] : overrides_)
      if (!known_.count(key))
        return fail(key, "unknown configuration key");
    walk(root_, "");
  }

private:
  toml::node* find(const std::string& key) {
    toml::node* node = &root_;
    std::stringstream parts{key};
    std::string part;
    while (node != nullptr && std::getline(parts, part, '.')) {
      if (auto* table = node->as_table()) {
        node = table->get(part);
      } else if (auto* array = node->as_array()) {
        char* end = nullptr;
        auto index = std::strtoul(part.c_str(), &end, 10);
        node = (*end == '\0' && index < array->size()) ? array->get(index) : nullptr;
      } else {
        node = nullptr;
      }
    }
    return node;
  }

  void walk(toml::node& node, const std::string& prefix) {
    if (failed())
      return;
    if (auto* table = node.as_table()) {
      for (auto& [name, child] : *table) {
        auto key = prefix.empty() ? std::string{name.str()}
                                  : prefix + "." + std::string{name.str()};
        if (child.is_table() || child.is_array_of_tables()) {
          if (!known_.count(key) && !child.is_array_of_tables()) {
            bool any = false;
            for (const auto& known : known_)
              any = any || known.rfind(key + ".", 0) == 0;
            if (!any)
              return fail(key, "unknown configuration section");
          }
          walk(child, key);
        } else if (!known_.count(key)) {
          return fail(key, "unknown configuration key");
        }
      }
    } else if (auto* array = node.as_array(); array && array->is_array_of_tables()) {
      for (size_t i = 0; i < array->size(); ++i)
        walk(*array->get(i), prefix + "." + std::to_string(i));
    }
  }

  toml::table& root_;
  std::map<std::string, std::string> overrides_;
  std::set<std::string> known_;
  std::string error_;
};

/// 1-64 of [A-Za-z0-9_.-].
bool valid_id(const std::string& id) {
  auto allowed = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
           || c == '.' || c == '-';
  };
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), allowed);
}

bool valid_http_url(const std::string& url) {
  return url.rfind("http://", 0) == 0 || url.rfind("https://", 0) == 0;
}

/// "HH:MM", 00:00 to 23:59.
bool valid_time_of_day(const std::string& text) {
  return text.size() == 5 && text[2] == ':' && std::isdigit(static_cast<unsigned char>(text[0]))
         && std::isdigit(static_cast<unsigned char>(text[1]))
         && std::isdigit(static_cast<unsigned char>(text[3]))
         && std::isdigit(static_cast<unsigned char>(text[4])) && std::stoi(text.substr(0, 2)) < 24
         && std::stoi(text.substr(3, 2)) < 60;
}

void read_all(key_reader& in, settings& out) {
  in.string("node.data_dir", out.data_dir);
  if (out.data_dir.empty())
    in.fail("node.data_dir", "must not be empty");
  int64_t instance_id = 1;
  in.integer("node.instance_id", instance_id, 1, 99999);
  if (in.present("node.instance_id"))
    out.instance_id = static_cast<int32_t>(instance_id);
  int64_t shards = out.order_shards;
  in.integer("node.order_shards", shards, 1, 99);
  out.order_shards = static_cast<int32_t>(shards);

  std::string listen = out.http_host + ":" + std::to_string(out.http_port);
  in.string("http.listen", listen);
  if (!split_host_port(listen, out.http_host, out.http_port))
    in.fail("http.listen", "expected HOST:PORT, got '" + listen + "'");
  out.public_url = "http://" + listen;
  in.string("http.public_url", out.public_url);
  if (!valid_http_url(out.public_url))
    in.fail("http.public_url", "expected an http:// or https:// URL");
  in.integer("http.max_connections", out.max_connections, 1, 1'000'000);
  in.integer("http.max_header_bytes", out.max_header_bytes, 1024, 1 << 20);
  in.integer("http.max_body_bytes", out.max_body_bytes, 1024, 16 << 20);
  in.integer("http.header_timeout_ms", out.header_timeout_ms, 100, 3'600'000);
  in.integer("http.body_timeout_ms", out.body_timeout_ms, 100, 3'600'000);
  in.integer("http.idle_timeout_ms", out.idle_timeout_ms, 100, 86'400'000);
  in.integer("http.max_inflight", out.max_inflight, 1, 1'000'000);
  in.integer("http.max_pipeline", out.max_pipeline, 1, 10'000);
  in.integer("http.gather_us", out.http_gather_us, 0, 1'000'000);
  in.integer("http.request_timeout_ms", out.request_timeout_ms, 100, 600'000);
  in.integer("http.timestamp_window_seconds", out.timestamp_window_seconds, 1, 3600);

  in.string("admin.listen", out.admin_listen);
  in.string("admin.certificate", out.admin_certificate);
  in.string("admin.key", out.admin_key);
  in.string("admin.cafile", out.admin_cafile);
  bool admin_tls = !out.admin_certificate.empty() || !out.admin_key.empty()
                   || !out.admin_cafile.empty();
  if (!out.admin_listen.empty()
      && !split_host_port(out.admin_listen, out.admin_host, out.admin_port))
    in.fail("admin.listen",
            "expected HOST:PORT (or \"\" for no admin console), got '" + out.admin_listen + "'");
  else if (admin_tls) {
    for (auto [key, path] :
         {std::pair{"admin.certificate", &out.admin_certificate},
          std::pair{"admin.key", &out.admin_key}, std::pair{"admin.cafile", &out.admin_cafile}}) {
      if (path->empty())
        in.fail(key, "mutual TLS needs admin.certificate, admin.key and admin.cafile together");
      else if (::access(path->c_str(), R_OK) != 0)
        in.fail(key, "cannot read '" + *path + "': " + std::strerror(errno));
    }
  } else if (!out.admin_listen.empty() && !is_loopback_host(out.admin_host))
    in.fail("admin.listen", "'" + out.admin_listen
                              + "' is not a loopback address: an admin "
                                "console reachable from other machines needs admin.certificate, "
                                "admin.key and admin.cafile (mutual TLS)");

  in.string("cluster.listen", out.cluster_listen);
  in.strings("cluster.peers", out.cluster_peers);
  if (!out.cluster_listen.empty()
      && !split_host_port(out.cluster_listen, out.cluster_host, out.cluster_port))
    in.fail("cluster.listen",
            "expected HOST:PORT (or \"\" for an instance alone), got '" + out.cluster_listen + "'");
  else if (!out.cluster_listen.empty() && !admin_tls && !is_loopback_host(out.cluster_host))
    in.fail("cluster.listen",
            "'" + out.cluster_listen
              + "' is not a loopback address: peers on "
                "other machines need admin.certificate, admin.key and admin.cafile "
                "(mutual TLS, shared with the admin console)");
  for (size_t i = 0; i < out.cluster_peers.size(); ++i) {
    std::string host;
    uint16_t port = 0;
    if (!split_host_port(out.cluster_peers[i], host, port))
      in.fail("cluster.peers", "entry " + std::to_string(i) + ": expected HOST:PORT, got '"
                                 + out.cluster_peers[i] + "'");
    else if (!admin_tls && !is_loopback_host(host))
      in.fail("cluster.peers", "'" + out.cluster_peers[i]
                                 + "' is not a loopback address: "
                                   "peers on other machines need mutual TLS (admin.certificate, "
                                   "admin.key, admin.cafile)");
  }
  if (out.cluster_listen.empty() && !out.cluster_peers.empty())
    in.fail("cluster.peers", "peers need cluster.listen: an instance alone has none");

  in.string("database.url", out.database_url);
  if (out.database_url.empty())
    in.fail("database.url", "must not be empty");
  in.integer("database.batch_rows", out.database_batch_rows, 1, 5000);
  in.integer("database.gather_ms", out.database_gather_ms, 0, 10'000);
  in.integer("database.connect_timeout_ms", out.database_connect_timeout_ms, 100, 600'000);
  in.integer("database.statement_timeout_ms", out.database_statement_timeout_ms, 100, 600'000);

  in.string("signing.private_key", out.signing_private_key);

  in.boolean("store.sync", out.store_sync);
  in.integer("store.max_batch_writes", out.store_max_batch_writes, 1, 100'000);
  in.integer("store.gather_us", out.store_gather_us, 0, 1'000'000);
  in.integer("store.min_free_bytes", out.store_min_free_bytes, 0, int64_t{1} << 50);

  in.integer("payments.min_expire_seconds", out.min_expire_seconds, 1, 86'400);
  in.integer("payments.max_driving_in_memory", out.max_driving_in_memory, 2, 10'000'000);
  in.integer("notify.workers", out.notify_workers, 1, 256);
  in.integer("notify.timeout_ms", out.notify_timeout_ms, 100, 600'000);
  in.integer("notify.retry_base_ms", out.notify_retry_base_ms, 10, 3'600'000);
  in.integer("notify.retry_max_ms", out.notify_retry_max_ms, 10, 86'400'000);
  // API: an undelivered webhook is retried for at least 24 hours.
  in.integer("notify.give_up_after_ms", out.notify_give_up_after_ms, 86'400'000, 30 * 86'400'000LL);
  in.integer("notify.untargeted_wait_ms", out.notify_untargeted_wait_ms, 100, 3'600'000);
  in.string("reconciliation.at", out.reconciliation_at);
  if (!out.reconciliation_at.empty() && !valid_time_of_day(out.reconciliation_at))
    in.fail("reconciliation.at", "expected HH:MM (UTC), or \"\" for no daily run");
  in.string("reconciliation.reports_dir", out.reconciliation_reports_dir);
  if (out.reconciliation_reports_dir.empty())
    out.reconciliation_reports_dir = out.data_dir + "/reports";
  in.string("actors.scheduler", out.scheduler_policy);
  if (out.scheduler_policy != "sharing" && out.scheduler_policy != "stealing")
    in.fail("actors.scheduler", "expected sharing or stealing");
  in.integer("actors.threads", out.scheduler_threads, 0, 256);

  in.string("log.level", out.log_level);
  static const std::set<std::string> levels{"trace", "debug",    "info", "warn",
                                            "error", "critical", "off"};
  if (!levels.count(out.log_level))
    in.fail("log.level", "expected one of trace, debug, info, warn, error, critical, off");

  std::set<std::string> merchant_ids;
  size_t merchants = in.table_array_size("merchants");
  for (size_t i = 0; i < merchants; ++i) {
    auto prefix = "merchants." + std::to_string(i) + ".";
    merchant_settings merchant;
    in.string(prefix + "id", merchant.id);
    in.string(prefix + "auth", merchant.auth);
    in.string(prefix + "secret", merchant.secret);
    in.string(prefix + "public_key", merchant.public_key_path);
    in.string(prefix + "notify_url", merchant.notify_url);
    if (!valid_id(merchant.id))
      in.fail(prefix + "id", "expected 1-64 of [A-Za-z0-9_.-]");
    else if (!merchant_ids.insert(merchant.id).second)
      in.fail(prefix + "id", "duplicate merchant id '" + merchant.id + "'");
    if (merchant.auth == "hmac-sha256") {
      if (merchant.secret.size() < 8)
        in.fail(prefix + "secret",
                "an hmac-sha256 merchant needs a secret of at least 8 characters");
    } else if (merchant.auth == "rsa-sha256") {
      if (merchant.public_key_path.empty())
        in.fail(prefix + "public_key", "an rsa-sha256 merchant needs a public key PEM path");
    } else {
      in.fail(prefix + "auth", "expected hmac-sha256 or rsa-sha256");
    }
    if (!merchant.notify_url.empty() && !valid_http_url(merchant.notify_url))
      in.fail(prefix + "notify_url", "expected an http:// or https:// URL");
    out.merchants.push_back(std::move(merchant));
  }

  std::set<std::string> channel_ids;
  size_t channels = in.table_array_size("channels");
  for (size_t i = 0; i < channels; ++i) {
    auto prefix = "channels." + std::to_string(i) + ".";
    channel_settings channel;
    in.string(prefix + "id", channel.id);
    in.string(prefix + "url", channel.url);
    in.string(prefix + "public_key", channel.public_key_path);
    in.string(prefix + "ca_file", channel.ca_file);
    in.integer(prefix + "weight", channel.weight, 0, 1'000'000);
    in.integer(prefix + "timeout_ms", channel.timeout_ms, 100, 600'000);
    in.integer(prefix + "concurrency", channel.concurrency, 1, 256);
    in.integer(prefix + "breaker_failures", channel.breaker_failures, 1, 1000);
    in.integer(prefix + "breaker_open_ms", channel.breaker_open_ms, 10, 3'600'000);
    in.integer(prefix + "settle_ms", channel.settle_ms, 0, 3'600'000);
    in.string(prefix + "statement_url", channel.statement_url);
    if (channel.statement_url.empty())
      channel.statement_url = channel.url
                              + (channel.url.empty() || channel.url.back() != '/' ? "/" : "")
                              + "v1/statements/{date}";
    else if (channel.statement_url.find("{date}") == std::string::npos
             || (!valid_http_url(channel.statement_url)
                 && channel.statement_url.rfind("file:///", 0) != 0))
      in.fail(prefix + "statement_url",
              "expected an http(s):// URL or file:///path with {date} in it");
    if (channel.public_key_path.empty())
      in.fail(prefix + "public_key", "a channel needs the public key that verifies its signatures");
    if (!valid_id(channel.id))
      in.fail(prefix + "id", "expected 1-64 of [A-Za-z0-9_.-]");
    else if (!channel_ids.insert(channel.id).second)
      in.fail(prefix + "id", "duplicate channel id '" + channel.id + "'");
    if (!valid_http_url(channel.url))
      in.fail(prefix + "url", "expected an http:// or https:// URL");
    else if (!channel.ca_file.empty() && channel.url.rfind("https://", 0) != 0)
      in.fail(prefix + "ca_file", "applies to an https:// channel URL only");
    out.channels.push_back(std::move(channel));
  }
  in.refuse_unknown();
}

}  // namespace

bool is_loopback_host(const std::string& host) {
  if (host == "localhost" || host == "::1")
    return true;
  in_addr address{};
  return ::inet_pton(AF_INET, host.c_str(), &address) == 1 && (ntohl(address.s_addr) >> 24) == 127;
}

bool split_host_port(const std::string& text, std::string& host, uint16_t& port) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return false;
  auto digits = text.substr(colon + 1);
  if (digits.size() > 5 || digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  auto number = std::stol(digits);
  if (number > 65535)
    return false;
  host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  port = static_cast<uint16_t>(number);
  return true;
}

namespace {

/// An error shows as one line: control characters (a quoted key or value may
/// hold them, and so may a TOML parser's message) are written as escapes.
std::string one_line(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (c == '\n')
      out += "\\n";
    else if (byte < 0x20 || byte == 0x7f) {
      char escaped[8];
      std::snprintf(escaped, sizeof(escaped), "\\x%02x", byte);
      out += escaped;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool parse_settings_text(const std::string& text, const std::string& source_name,
                         const std::vector<std::string>& overrides, settings& out,
                         std::string& error) {
  std::map<std::string, std::string> override_map;
  for (const auto& entry : overrides) {
    auto equals = entry.find('=');
    if (equals == std::string::npos || equals == 0) {
      error = "--set " + entry + ": expected KEY=VALUE";
      return false;
    }
    override_map[entry.substr(0, equals)] = entry.substr(equals + 1);
  }
  toml::table root;
  try {
    root = toml::parse(text, source_name);
  } catch (const toml::parse_error& failure) {
    const auto& where = failure.source().begin;
    error = source_name + ":" + std::to_string(where.line) + ":" + std::to_string(where.column)
            + ": " + std::string{failure.description()};
    return false;
  }
  key_reader in{root, std::move(override_map)};
  out = settings{};
  read_all(in, out);
  if (in.failed()) {
    error = in.error();
    return false;
  }
  return true;
}

}  // namespace

bool parse_settings(const std::string& text, const std::string& source_name,
                    const std::vector<std::string>& overrides, settings& out, std::string& error) {
  if (parse_settings_text(text, source_name, overrides, out, error))
    return true;
  error = one_line(error);
  return false;
}

bool load_settings(const std::string& path, const std::vector<std::string>& overrides,
                   settings& out, std::string& error) {
  std::ifstream file{path};
  if (!file) {
    error = "cannot read config file " + path;
    return false;
  }
  std::stringstream text;
  text << file.rdbuf();
  return parse_settings(text.str(), path, overrides, out, error);
}

}  // namespace paybus
