// paybusd: the payment bus daemon. See docs/operations.md.

#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>
#include <malloc.h>
#include <mutex>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/doorman.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/publish.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/publish.hpp>
#include <caf/send.hpp>
#include <curl/curl.h>
#include <spdlog/spdlog.h>

#include "actors/admin/admin_actor.hpp"
#include "actors/channel/channel_actor.hpp"
#include "actors/cluster/cluster_actor.hpp"
#include "actors/cluster/cluster_directory.hpp"
#include "actors/cluster/slot_table.hpp"
#include "actors/ledger/sink_actor.hpp"
#include "actors/payment/coordinator.hpp"
#include "actors/reconcile/reconcile_actor.hpp"
#include "actors/store/store_actor.hpp"
#include "actors/webhook/notifier.hpp"
#include "common/clock.hpp"
#include "common/live_switches.hpp"
#include "common/metrics.hpp"
#include "common/pay_id.hpp"
#include "config/settings.hpp"
#include "gateway/ingress.hpp"
#include "programs/startup.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {
void note_cluster_tls_port(uint16_t port);  // programs/tls_refusals.cpp
}  // namespace paybus

namespace {

constexpr int exit_clean = 0;
constexpr int exit_fatal = 1;
constexpr int exit_bad_config = 2;

int bad_config(const std::string& line) {
  std::cerr << "paybusd: config error: " << line << std::endl;
  return exit_bad_config;
}

// Set by the database sink when the registry holds this instance's number
// for another: the bus stops, and says why.
std::atomic<bool> refused_instance{false};

int fatal(const std::string& line) {
  spdlog::critical("{}", line);
  return exit_fatal;
}

/// Loads every key file the configuration names; the first failure is a
/// config error naming its key.
bool load_keys(const paybus::settings& config,
               std::unordered_map<std::string, paybus::merchant_credentials>& merchants,
               std::unordered_map<std::string, paybus::crypto::pkey_ptr>& channel_keys,
               paybus::crypto::pkey_ptr& signing_key, std::string& error) {
  using namespace paybus;
  std::string why;
  if (!config.signing_private_key.empty()) {
    signing_key = crypto::load_private_key(config.signing_private_key, why);
    if (!signing_key) {
      error = "signing.private_key: " + why;
      return false;
    }
  } else if (!config.channels.empty()) {
    error = "signing.private_key: channels are configured, so the bus needs a key to sign with";
    return false;
  }
  for (size_t i = 0; i < config.merchants.size(); ++i) {
    const auto& merchant = config.merchants[i];
    if (merchant.auth == "rsa-sha256" && !signing_key) {
      error = "signing.private_key: rsa-sha256 merchants get notifications signed with it";
      return false;
    }
    merchant_credentials credentials;
    credentials.id = merchant.id;
    credentials.rsa = merchant.auth == "rsa-sha256";
    credentials.secret = merchant.secret;
    credentials.notify_url = merchant.notify_url;
    if (credentials.rsa) {
      credentials.public_key = crypto::load_public_key(merchant.public_key_path, why);
      if (!credentials.public_key) {
        error = "merchants." + std::to_string(i) + ".public_key: " + why;
        return false;
      }
    }
    merchants.emplace(merchant.id, std::move(credentials));
  }
  for (size_t i = 0; i < config.channels.size(); ++i) {
    const auto& channel = config.channels[i];
    auto key = crypto::load_public_key(channel.public_key_path, why);
    if (!key) {
      error = "channels." + std::to_string(i) + ".public_key: " + why;
      return false;
    }
    channel_keys.emplace(channel.id, std::move(key));
    if (!channel.ca_file.empty() && crypto::count_certificates(channel.ca_file, why) == 0) {
      error = "channels." + std::to_string(i) + ".ca_file: " + why;
      return false;
    }
  }
  return true;
}

/// Lets the process hold `http.max_connections` sockets plus its own files
/// (store, channels, database): the soft limit of open files is raised up to
/// the hard one, with a warning if even that is too low.
void raise_file_limit(int64_t max_connections) {
  constexpr rlim_t own_files = 1024;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
    return;
  rlim_t wanted = static_cast<rlim_t>(max_connections) + own_files;
  if (limit.rlim_cur < wanted) {
    limit.rlim_cur = limit.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, limit.rlim_max);
    setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < wanted)
    spdlog::warn("open files are limited to {}, below http.max_connections + {}: raise the hard "
                 "limit (ulimit -Hn, LimitNOFILE=) or lower http.max_connections",
                 static_cast<uint64_t>(limit.rlim_cur), static_cast<uint64_t>(own_files));
}

}  // namespace

int main(int argc, char** argv) {
  using namespace paybus;
  CLI::App app{"paybusd: the paybus payment bus daemon"};
  std::string config_path;
  std::vector<std::string> overrides;
  app.add_option("--config", config_path, "TOML configuration file")->required();
  app.add_option("--set", overrides, "override a key: dotted.key=value (repeatable)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? exit_clean : exit_bad_config;
  }

  settings config;
  std::string error;
  if (!load_settings(config_path, overrides, config, error))
    return bad_config(error);
  std::unordered_map<std::string, merchant_credentials> merchants;
  std::unordered_map<std::string, crypto::pkey_ptr> channel_keys;
  crypto::pkey_ptr signing_key;
  if (!load_keys(config, merchants, channel_keys, signing_key, error))
    return bad_config(error);

  spdlog::set_level(spdlog::level::from_str(config.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ paybusd: %v");

  // Signals are taken by sigwait below; every thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // Few malloc arenas: with a thread per detached actor and worker, glibc's
  // default (8 per core) holds on to freed memory per thread.
  mallopt(M_ARENA_MAX, 2);
  curl_global_init(CURL_GLOBAL_DEFAULT);  // before any thread exists
  raise_file_limit(config.max_connections);

  int listen_fd = open_listener(config.http_host, config.http_port, error);
  if (listen_fd < 0)
    return fatal("cannot listen on " + config.http_host + ":" + std::to_string(config.http_port)
                 + ": " + error);

  std::error_code fs_error;
  std::filesystem::create_directories(config.data_dir, fs_error);
  if (fs_error)
    return fatal("cannot create node.data_dir " + config.data_dir + ": " + fs_error.message());
  local_store_options store_options;
  store_options.sync = config.store_sync;
  store_options.min_free_bytes = static_cast<uint64_t>(config.store_min_free_bytes);
  store_options.nonce_retention_ms = 2 * config.timestamp_window_seconds * 1000;
  auto store = local_store::open(config.data_dir + "/store", store_options, error);
  if (!store)
    return fatal(error);
  if (!config.store_sync)
    spdlog::warn("store.sync = false: acknowledged payments can be lost on a power failure");

  auto identity = resolve_instance(*store, config, error);
  if (!identity)
    return fatal(error);
  auto instance_id = std::optional<int32_t>{identity->id};

  // Never reuse a time step: not the newest stored id's, not this start's.
  int64_t floor_ms = unix_now_ms();
  if (auto last = parse_pay_id(store->last_pay_id()))
    floor_ms = std::max(floor_ms, last->unix_ms);
  std::this_thread::sleep_for(std::chrono::milliseconds{2});

  // The operator's switches: the configuration's channels, with what the
  // admin console changed laid over them.
  switch_state initial_switches;
  for (const auto& channel : config.channels)
    initial_switches.channels.push_back({channel.id, channel.weight, true, false, false});
  {
    std::optional<std::string> stored;
    auto status = store->get_admin("switches", stored);
    std::vector<std::string> dropped;
    if (!status.ok())
      return fatal("cannot read the admin switches: " + status.ToString());
    if (stored && !overlay_switches(*stored, initial_switches, dropped, error))
      return fatal(error);
    for (const auto& gone : dropped)
      spdlog::warn("admin: channel {} has switches in the store but is no longer configured", gone);
  }
  if (!initial_switches.log_level.empty())
    spdlog::set_level(spdlog::level::from_str(initial_switches.log_level));
  live_switches switches{initial_switches};
  std::vector<std::string> audit;
  if (auto status = store->admin_tail("audit/", 1000, audit); !status.ok())
    return fatal("cannot read the admin audit log: " + status.ToString());

  metrics figures;
  show_switches(figures, initial_switches);
  for (const auto& channel : initial_switches.channels)
    if (channel.changed)
      spdlog::info("admin: channel {} as the console left it: weight {}, {}{}", channel.id,
                   channel.weight, channel.enabled ? "enabled" : "disabled",
                   channel.breaker_forced ? ", breaker held open" : "");
  for (auto which : all_degrade_switches)
    if (initial_switches.is_paused(which))
      spdlog::warn("admin: {} paused (degrade {} on), as the console left it", to_string(which),
                   to_string(which));
  caf::actor_system_config caf_config;
  caf_config.load<caf::io::middleman>();
  bool admin_tls = !config.admin_certificate.empty();
  std::shared_ptr<const crypto::certificate_verifier> admin_verifier;
  if (admin_tls) {
    auto verifier = crypto::certificate_verifier::load(config.admin_cafile, error);
    if (!verifier)
      return bad_config("admin.cafile: " + error);
    admin_verifier = std::move(verifier);
    // Both sides present certificates that chain to admin.cafile.
    caf_config.load<caf::openssl::manager>();
    caf_config.openssl_certificate = config.admin_certificate;
    caf_config.openssl_key = config.admin_key;
    caf_config.openssl_cafile = config.admin_cafile;
  }
  // A console that died is noticed within seconds, not when TCP gives up.
  caf_config.set("middleman.heartbeat-interval", caf::timespan{std::chrono::seconds{1}});
  caf_config.set("middleman.connection-timeout", caf::timespan{std::chrono::seconds{5}});
  // One read a readiness: the multiplexer's epoll is level-triggered, so what
  // is left is read at its next turn, and a client's one request costs one
  // recv, not a second that finds the socket empty.
  caf_config.set("middleman.max-consecutive-reads", size_t{1});
  caf_config.add_message_types<caf::id_block::paybus>();
  auto threads = config.scheduler_threads > 0
                   ? static_cast<size_t>(config.scheduler_threads)
                   : static_cast<size_t>(std::max(1u, std::thread::hardware_concurrency()));
  caf_config.set("scheduler.max-threads", threads);
  // "sharing" wakes an idle worker when work arrives; "stealing" polls, and
  // its idle workers sleep up to relaxed-sleep-duration (10 ms by default).
  caf_config.set("scheduler.policy", config.scheduler_policy == "sharing" ? caf::atom("sharing")
                                                                          : caf::atom("stealing"));
  caf_config.set("work-stealing.relaxed-sleep-duration",
                 caf::timespan{std::chrono::microseconds{500}});
  caf_config.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system system{caf_config};

  pg_database_options database{config.database_url, config.database_connect_timeout_ms,
                               config.database_statement_timeout_ms};
  sink_actor_limits sink_limits;
  sink_limits.batch_rows = static_cast<size_t>(config.database_batch_rows);
  sink_limits.gather_ms = config.database_gather_ms;
  sink_limits.switches = &switches;
  store_actor_limits store_limits;
  store_limits.max_batch_writes = static_cast<size_t>(config.store_max_batch_writes);
  store_limits.gather_us = config.store_gather_us;
  // A payment with no webhook target (none of its own, none of its
  // merchant's) leaves no outbox entry for the notifier to read and drop.
  settlement_policy policy;
  policy.default_webhook_merchants.emplace();
  for (const auto& merchant : config.merchants)
    if (!merchant.notify_url.empty())
      policy.default_webhook_merchants->insert(merchant.id);
  auto adopted_policy = policy;  // for stores adopted later (cluster adopt)
  auto writer = spawn_store(system, *store, figures, store_limits, std::move(policy));
  // A number taken while the registry was unreachable is entered before any
  // row goes to the database; held by another instance, the bus stops.
  sink_instance_claim claim{identity->id, identity->fingerprint, registry_uri(config),
                            identity->confirmed, [](const std::string&) {
                              refused_instance.store(true);
                              kill(getpid(), SIGTERM);
                            }};
  auto sink = spawn_sink(system, *store, figures, database, writer, sink_limits, std::move(claim));
  auto reader = spawn_reader(system, *store);
  std::vector<order_shard_settings> shards;
  for (int32_t shard = 0; shard < config.order_shards; ++shard) {
    order_shard_settings shard_settings;
    shard_settings.instance_id = *instance_id;
    shard_settings.shard = shard;
    shard_settings.pay_id_floor_ms = floor_ms;
    shard_settings.switches = &switches;
    for (const auto& channel : config.channels)
      shard_settings.channels.emplace_back(channel.id, channel.weight);
    shards.push_back(std::move(shard_settings));
  }

  // Declared after the actor system: the actor handles it holds must be gone
  // before the system's destructor waits for detached actors.
  auto context = std::make_shared<ingress_context>();
  context->merchants = std::move(merchants);
  context->http.max_header_bytes = static_cast<size_t>(config.max_header_bytes);
  context->http.max_body_bytes = static_cast<size_t>(config.max_body_bytes);
  context->max_connections = static_cast<size_t>(config.max_connections);
  context->max_inflight = config.max_inflight;
  context->max_pipeline = static_cast<size_t>(config.max_pipeline);
  context->gather = std::chrono::microseconds{config.http_gather_us};
  context->header_timeout_ms = config.header_timeout_ms;
  context->body_timeout_ms = config.body_timeout_ms;
  context->idle_timeout_ms = config.idle_timeout_ms;
  context->request_timeout = std::chrono::milliseconds{config.request_timeout_ms};
  context->timestamp_window_seconds = config.timestamp_window_seconds;
  context->orders.min_expire_seconds = config.min_expire_seconds;
  for (const auto& channel : config.channels)
    context->channels.insert(channel.id);
  std::vector<coordinator_channel> channels;
  for (const auto& channel : config.channels) {
    channel_settings_runtime runtime;
    runtime.id = channel.id;
    runtime.url = channel.url;
    runtime.ca_file = channel.ca_file;
    runtime.notify_url = config.public_url + "/v1/channels/" + channel.id + "/notify";
    runtime.bus_key = signing_key;
    runtime.channel_key = channel_keys.at(channel.id);
    runtime.timeout_ms = channel.timeout_ms;
    runtime.concurrency = static_cast<size_t>(channel.concurrency);
    runtime.breaker_failures = static_cast<int>(channel.breaker_failures);
    runtime.breaker_open_ms = channel.breaker_open_ms;
    runtime.window_seconds = config.timestamp_window_seconds;
    runtime.switches = &switches;
    channels.push_back({channel.id, channel.weight, spawn_channel(system, runtime, figures),
                        2 * runtime.concurrency, channel.settle_ms});
  }
  auto coordinator = spawn_coordinator(system, writer, reader, channels,
                                       static_cast<size_t>(config.max_driving_in_memory), figures,
                                       &switches);
  notifier_settings notify;
  for (const auto& merchant : config.merchants)
    notify.merchants.push_back(
      {merchant.id, merchant.auth == "rsa-sha256", merchant.secret, merchant.notify_url});
  notify.bus_key = signing_key;
  notify.workers = static_cast<size_t>(config.notify_workers);
  notify.timeout_ms = config.notify_timeout_ms;
  notify.retry_base_ms = config.notify_retry_base_ms;
  notify.retry_max_ms = config.notify_retry_max_ms;
  notify.give_up_after_ms = config.notify_give_up_after_ms;
  notify.untargeted_wait_ms = config.notify_untargeted_wait_ms;
  notify.switches = &switches;
  auto notifier = spawn_notifier(system, *store, writer, notify, figures);
  // The writer tells them, after each commit, of the work it gave them.
  caf::anon_send(writer, attach_atom::value, caf::actor_cast<caf::actor>(sink),
                 caf::actor_cast<caf::actor>(notifier), caf::actor_cast<caf::actor>(coordinator));
  std::vector<reconciliation_actor> reconcilers;
  auto reconciliation_stopping = std::make_shared<std::atomic<bool>>(false);
  // What a run killed with the process left behind (a download, a sort).
  std::error_code ignored;
  std::filesystem::remove_all(config.data_dir + "/reconcile-scratch", ignored);
  for (const auto& channel : config.channels) {
    reconciliation_settings reconcile;
    reconcile.source.channel_id = channel.id;
    reconcile.source.url_template = channel.statement_url;
    reconcile.source.ca_file = channel.ca_file;
    reconcile.source.connect_timeout_ms = std::min<int64_t>(channel.timeout_ms, 10'000);
    reconcile.source.window_seconds = config.timestamp_window_seconds;
    reconcile.bus_key = signing_key;
    reconcile.channel_key = channel_keys.at(channel.id);
    reconcile.places.reports_dir = config.reconciliation_reports_dir;
    reconcile.places.scratch_dir = config.data_dir + "/reconcile-scratch";
    reconcile.daily_at = config.reconciliation_at;
    reconcile.stopping = reconciliation_stopping;
    reconcile.switches = &switches;
    reconcilers.push_back(
      spawn_reconciliation(system, std::move(reconcile), *store, writer, figures));
    context->reconcilers.emplace(channel.id, reconcilers.back());
  }
  context->bus_key = signing_key;
  context->coordinator = coordinator;
  context->channel_keys = channel_keys;
  context->shards = shards;
  context->reader = reader;
  context->store = writer;
  context->figures = &figures;
  context->store_reads = store.get();

  // Payments accepted before a stop and not final yet: the coordinator
  // reads them from the store on its first tick.
  // With peers: who serves which instance number (the cluster actor keeps it).
  std::optional<cluster_directory> directory;
  shared_slots slots;
  if (!config.cluster_listen.empty()) {
    directory.emplace(*instance_id);
    // The slot table as this instance last read it: it serves while the
    // database is down; one with a higher epoch replaces it.
    std::optional<std::string> cached;
    if (auto status = store->get_admin("slots", cached); !status.ok())
      return fatal("cannot read the cached slot table: " + status.ToString());
    if (cached) {
      auto table = decode_slots(*cached, error);
      if (!table)
        return fatal("the local store's cached slot table is damaged: " + error);
      spdlog::info("cluster: slot table at epoch {} from the local store: this instance owns "
                   "{} of {} slots",
                   table->epoch, table->counts()[*instance_id], slot_count);
      figures.set_cluster_slots(table->epoch, table->counts()[*instance_id]);
      slots.offer(std::move(*table));
    }
  }
  // Adopted instances (cluster adopt): each store with its own writer,
  // reader, sink, coordinator and notifier, paying through this process's
  // channel actors. Its figures are its own (not this instance's /metrics).
  struct adopted_stack {
    std::shared_ptr<local_store> store;
    std::unique_ptr<metrics> figures;
    store_actor writer;
    reader_actor reader;
    sink_actor sink;
    coordinator_actor coordinator;
    notifier_actor notifier;
  };
  std::mutex adopted_mutex;
  std::vector<adopted_stack> adopted_stacks;
  auto open_adopted = [&](int32_t instance, const std::string& dir,
                          std::string& why) -> std::shared_ptr<local_store> {
    auto path = std::filesystem::exists(dir + "/store") ? dir + "/store" : dir;
    if (!std::filesystem::exists(path + "/CURRENT")) {
      why = "no local store at " + dir + " (nor at " + dir + "/store)";
      return nullptr;
    }
    std::shared_ptr<local_store> opened{local_store::open(path, store_options, why)};
    if (!opened)
      return nullptr;
    std::optional<std::string> number;
    if (!opened->get_meta("instance_id", number).ok() || !number
        || std::strtol(number->c_str(), nullptr, 10) != instance) {
      why = "the store at " + path + " is instance " + (number ? *number : std::string{"(none)"})
            + "'s, not instance " + std::to_string(instance) + "'s";
      return nullptr;
    }
    return opened;
  };
  auto serve_adopted = [&](int32_t instance, const std::string& dir,
                           std::shared_ptr<local_store> opened) -> adopted_store {
    adopted_stack stack;
    stack.store = std::move(opened);
    stack.figures = std::make_unique<metrics>();
    auto& adopted = *stack.store;
    stack.writer = spawn_store(system, adopted, *stack.figures, store_limits, adopted_policy);
    std::optional<std::string> fingerprint;
    (void) adopted.get_meta("fingerprint", fingerprint);
    sink_instance_claim confirmed{instance, fingerprint.value_or(""), "", true, nullptr};
    stack.sink = spawn_sink(system, adopted, *stack.figures, database, stack.writer, sink_limits,
                            std::move(confirmed));
    stack.reader = spawn_reader(system, adopted);
    stack.coordinator = spawn_coordinator(system, stack.writer, stack.reader, channels,
                                          static_cast<size_t>(config.max_driving_in_memory),
                                          *stack.figures, &switches);
    stack.notifier = spawn_notifier(system, adopted, stack.writer, notify, *stack.figures);
    caf::anon_send(stack.writer, attach_atom::value, caf::actor_cast<caf::actor>(stack.sink),
                   caf::actor_cast<caf::actor>(stack.notifier),
                   caf::actor_cast<caf::actor>(stack.coordinator));
    adopted_store served{instance, dir, stack.reader, stack.writer, stack.store.get()};
    std::lock_guard<std::mutex> guard{adopted_mutex};
    adopted_stacks.push_back(std::move(stack));
    return served;
  };
  cluster_actor cluster;
  if (directory) {
    // Stores adopted before a restart are served again before anything else.
    std::optional<std::string> kept;
    if (auto status = store->get_admin("adopted", kept); !status.ok())
      return fatal("cannot read the adopted stores: " + status.ToString());
    if (kept) {
      auto list = decode_adopted(*kept);
      if (!list)
        return fatal("the local store's list of adopted stores is damaged");
      for (const auto& [instance, dir] : *list) {
        auto opened = open_adopted(instance, dir, error);
        if (!opened)
          return fatal("cannot open the store of adopted instance " + std::to_string(instance)
                       + ": " + error + "; its slots must not be served without it");
        directory->adopt(serve_adopted(instance, dir, std::move(opened)));
        spdlog::info("cluster: serving adopted instance {} from {}", instance, dir);
      }
    }
    cluster_settings peers;
    peers.instance_id = *instance_id;
    peers.fingerprint = identity->fingerprint;
    peers.address = config.cluster_listen;
    peers.seeds = config.cluster_peers;
    peers.tls = admin_tls;
    peers.database = database;
    peers.reader = reader;
    peers.writer = writer;
    peers.directory = &*directory;
    peers.slots = &slots;
    peers.coordinator = coordinator;
    peers.shard = shards.front();
    peers.shard.shard = config.order_shards;  // a counter space of its own
    peers.figures = &figures;
    peers.fenced = [](const std::string&) {
      refused_instance.store(true);
      kill(getpid(), SIGTERM);
    };
    peers.open_store = open_adopted;
    peers.serve_store = serve_adopted;
    cluster = spawn_cluster(system, std::move(peers));
  }
  admin_actor admin;
  std::string admin_error;
  if (!config.admin_listen.empty()) {
    admin_settings console;
    console.instance_id = *instance_id;
    console.version = PAYBUS_VERSION;
    console.started_unix_ms = unix_now_ms();
    console.switches = &switches;
    console.figures = &figures;
    console.writer = writer;
    console.reader = reader;
    for (const auto& [id, reconciler] : context->reconcilers)
      console.reconcilers.emplace(id, reconciler);
    console.audit = std::move(audit);
    console.verifier = admin_verifier;
    console.cluster = directory ? &*directory : nullptr;
    console.cluster_handle = cluster;
    admin = spawn_admin(system, std::move(console));
    auto published
      = admin_tls ? caf::openssl::publish(admin, config.admin_port, config.admin_host.c_str(), true)
                  : caf::io::publish(admin, config.admin_port, config.admin_host.c_str(), true);
    if (!published) {
      // Stopped like at a signal: the actors running now go down in order.
      admin_error = "cannot publish the admin console on " + config.admin_listen + ": "
                    + system.render(published.error());
      spdlog::critical("{}", admin_error);
      kill(getpid(), SIGTERM);
    } else
      spdlog::info("admin console on {} ({})", config.admin_listen,
                   admin_tls ? "mutual TLS, certificates from " + config.admin_cafile
                             : std::string{"loopback, no TLS"});
  }

  // Several instances: this one's side, published for its peers with the
  // admin console's TLS settings.
  if (cluster && admin_error.empty()) {
    if (admin_tls)
      note_cluster_tls_port(config.cluster_port);
    auto published
      = admin_tls
          ? caf::openssl::publish(cluster, config.cluster_port, config.cluster_host.c_str(), true)
          : caf::io::publish(cluster, config.cluster_port, config.cluster_host.c_str(), true);
    if (!published) {
      admin_error = "cannot publish the cluster actor on " + config.cluster_listen + ": "
                    + system.render(published.error());
      spdlog::critical("{}", admin_error);
      kill(getpid(), SIGTERM);
    } else {
      spdlog::info("cluster: instance {} on {} ({}), {} seed peers", *instance_id,
                   config.cluster_listen,
                   admin_tls ? "mutual TLS" : std::string{"loopback, no TLS"},
                   config.cluster_peers.size());
      context->cluster = &*directory;
      context->slots = &slots;
      context->forward_timeout
        = std::min(std::chrono::milliseconds{5'000},
                   std::chrono::milliseconds{config.request_timeout_ms * 3 / 4});
    }
  }

  auto listener = system.middleman().backend().new_doorman(listen_fd);
  auto ingress = spawn_ingress(system, std::move(listener), context);
  spdlog::info("paybusd instance {} listening on {}:{} (public {}), store {}/store, "
               "database {}, {} merchants, {} order shards",
               *instance_id, config.http_host, config.http_port, config.public_url, config.data_dir,
               redact_url(config.database_url), config.merchants.size(), config.order_shards);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("signal {} received: draining", signal_number);
  caf::anon_send(ingress, drain_atom::value);
  auto deadline = monotonic_now_ms() + config.request_timeout_ms;
  std::this_thread::sleep_for(std::chrono::milliseconds{50});
  while (figures.http_inflight.load() > 0 && monotonic_now_ms() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  std::this_thread::sleep_for(std::chrono::milliseconds{100});  // last writes flush
  caf::anon_send_exit(ingress, caf::exit_reason::user_shutdown);
  if (admin)
    caf::anon_send_exit(admin, caf::exit_reason::user_shutdown);
  if (cluster)
    caf::anon_send_exit(cluster, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(coordinator, caf::exit_reason::user_shutdown);
  {
    std::lock_guard<std::mutex> guard{adopted_mutex};
    for (auto& stack : adopted_stacks) {
      caf::anon_send_exit(stack.coordinator, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(stack.notifier, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(stack.reader, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(stack.writer, caf::exit_reason::user_shutdown);
      caf::anon_send_exit(stack.sink, caf::exit_reason::user_shutdown);
    }
  }
  caf::anon_send_exit(notifier, caf::exit_reason::user_shutdown);
  for (auto& channel : channels)
    caf::anon_send_exit(channel.handle, caf::exit_reason::user_shutdown);
  channels.clear();
  reconciliation_stopping->store(true);
  for (auto& reconciler : reconcilers)
    caf::anon_send_exit(reconciler, caf::exit_reason::user_shutdown);
  reconcilers.clear();
  caf::anon_send_exit(reader, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(writer, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(sink, caf::exit_reason::user_shutdown);
  system.await_all_actors_done();
  if (!admin_error.empty())
    return fatal("stopped: " + admin_error);
  if (refused_instance.load())
    return fatal("stopped: this instance's number belongs to another instance (see above); "
                 "give this store its own number before starting it again");
  spdlog::info("stopped cleanly; {} rows still wait for the database", store->outbox_size());
  return exit_clean;
}
