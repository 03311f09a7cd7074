// paybus-admin: the admin console (API.md section 8). Connects to a running
// paybusd's admin actor through CAF's middleman (mutual TLS with
// --certificate/--key/--cafile), runs the commands given with -c, or reads
// them from stdin, or, on a terminal, interactively with line editing,
// history and completion. Exit codes: 0 ok, 1 a command failed, 3 cannot
// connect.

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/remote_actor.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/openssl/remote_actor.hpp>
#include <caf/scoped_actor.hpp>
#include <editline/readline.h>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "actors/admin/admin_command.hpp"
#include "common/certificates.hpp"
#include "common/clock.hpp"
#include "config/settings.hpp"
#include "messages/interfaces.hpp"
#include "tools/admin_render.hpp"

namespace {

using namespace paybus;
using json = nlohmann::ordered_json;

constexpr int exit_ok = 0;
constexpr int exit_failed = 1;
constexpr int exit_no_bus = 3;

struct options {
  std::string connect;
  bool json_output = false;
  std::vector<std::string> commands;
  std::string certificate;
  std::string key;
  std::string cafile;
  int64_t connect_timeout_ms = 10'000;
};

/// The admin.listen of configs/paybus.toml, if that file is here.
std::string default_address() {
  try {
    auto root = toml::parse_file("configs/paybus.toml");
    if (auto listen = root["admin"]["listen"].value<std::string>(); listen && !listen->empty())
      return *listen;
  } catch (const std::exception&) {
  }
  return "127.0.0.1:8079";
}

class console {
public:
  console(caf::actor_system& system, admin_actor bus, const options& opts)
    : self_(system), bus_(std::move(bus)), opts_(opts) {
  }

  /// Over mutual TLS: the certificate and key that sign each command.
  bool sign_with(const std::string& certificate, const std::string& key, std::string& error) {
    std::string subject;
    if (!crypto::read_certificate(certificate, certificate_, subject, error))
      return false;
    key_ = crypto::read_private_key(key, error);
    return key_ != nullptr;
  }

  bool lost() const {
    return lost_;
  }

  /// Runs one command line: 0, 1, or 3 when the bus went away.
  int run(const std::string& line) {
    auto words = split_command_words(line);
    std::string error;
    if (!parse_admin_command(words, error))
      return fail("bad_command", error);
    bool slow = words[0] == "reconcile";
    auto timeout = slow ? std::chrono::seconds{6 * 3600} : std::chrono::seconds{60};
    int code = exit_ok;
    self_->request(bus_, timeout, request(words))
      .receive(
        [&](admin_reply& reply) {
          auto document = json::parse(reply.json, nullptr, false);
          if (reply.failed) {
            auto problem = document.is_object() && document.contains("error")
                             ? document["error"]
                             : json{{"code", "failed"}, {"message", reply.json}};
            code = fail(problem.value("code", "failed"), problem.value("message", ""));
            return;
          }
          if (opts_.json_output)
            std::cout << document.dump() << std::endl;
          else
            std::cout << render_admin_answer(words[0], document) << std::flush;
          if (words[0] == "channels" && document.contains("channels")) {
            channel_ids_.clear();
            for (const auto& channel : document["channels"])
              channel_ids_.push_back(channel.value("id", ""));
          }
        },
        [&](caf::error& problem) {
          lost_ = true;
          code = fail("no_bus", "no answer from the bus: " + self_->system().render(problem));
          code = exit_no_bus;
        });
    return code;
  }

  const std::vector<std::string>& channel_ids() const {
    return channel_ids_;
  }

  /// Learns the channel ids for completion, quietly.
  void learn_channels() {
    self_->request(bus_, std::chrono::seconds{10}, request({"channels"}))
      .receive(
        [&](admin_reply& reply) {
          auto document = json::parse(reply.json, nullptr, false);
          if (!reply.failed && document.contains("channels"))
            for (const auto& channel : document["channels"])
              channel_ids_.push_back(channel.value("id", ""));
        },
        [&](caf::error&) {});
  }

private:
  admin_request request(const std::vector<std::string>& words) const {
    admin_request out;
    out.words = words;
    if (key_) {
      out.certificate = certificate_;
      out.at_ms = unix_now_ms();
      out.signature = crypto::sign_sha256_base64(key_.get(),
                                                 crypto::admin_signed_text(out.at_ms, words));
    }
    return out;
  }

  int fail(const std::string& code, const std::string& message) {
    std::cerr << "paybus-admin: " << message << std::endl;
    if (opts_.json_output)
      std::cout << json{{"error", {{"code", code}, {"message", message}}}}.dump() << std::endl;
    return exit_failed;
  }

  caf::scoped_actor self_;
  admin_actor bus_;
  const options& opts_;
  std::string certificate_;
  crypto::pkey_ptr key_;
  bool lost_ = false;
  std::vector<std::string> channel_ids_;
};

// Completion reads these (libedit calls plain functions).
console* completing = nullptr;
std::vector<std::string> candidates;

char* next_candidate(const char* text, int state) {
  static size_t index = 0;
  if (state == 0)
    index = 0;
  std::string prefix{text};
  while (index < candidates.size()) {
    const auto& word = candidates[index++];
    if (word.compare(0, prefix.size(), prefix) == 0)
      return strdup(word.c_str());
  }
  return nullptr;
}

char** complete(const char* text, int start, int) {
  rl_attempted_completion_over = 1;
  std::string before{rl_line_buffer, static_cast<size_t>(start)};
  candidates = admin_completions(split_command_words(before), completing
                                                                ? completing->channel_ids()
                                                                : std::vector<std::string>{});
  return rl_completion_matches(text, next_candidate);
}

int interactive(console& bus) {
  std::string history;
  if (const char* home = std::getenv("HOME"))
    history = std::string{home} + "/.paybus_admin_history";
  using_history();
  if (!history.empty())
    read_history(history.c_str());
  completing = &bus;
  rl_attempted_completion_function = complete;
  bus.learn_channels();
  std::cout << "paybus-admin: type help for the commands, quit or Ctrl-D to leave" << std::endl;
  int last = exit_ok;
  while (true) {
    char* raw = readline("paybus> ");
    if (raw == nullptr) {
      std::cout << std::endl;
      break;
    }
    std::string line{raw};
    std::free(raw);
    auto words = split_command_words(line);
    if (words.empty())
      continue;
    add_history(line.c_str());
    if (!history.empty())
      write_history(history.c_str());
    if (words[0] == "quit" || words[0] == "exit")
      break;
    last = bus.run(line);
    if (bus.lost())
      return exit_no_bus;
  }
  return last;
}

}  // namespace

int main(int argc, char** argv) {
  options opts;
  CLI::App app{"paybus-admin: the paybus admin console (docs/operations.md)"};
  app.add_option("--connect", opts.connect,
                 "HOST:PORT of the bus's admin.listen (default: that of configs/paybus.toml, "
                 "else 127.0.0.1:8079)");
  app.add_flag("--json", opts.json_output, "one JSON document per command on stdout");
  app.add_option("-c,--command", opts.commands,
                 "a command to run (repeatable: in order, stopping at the first failure)");
  app.add_option("--certificate", opts.certificate, "PEM certificate to present (mutual TLS)")
    ->check(CLI::ExistingFile);
  app.add_option("--key", opts.key, "PEM private key of --certificate")->check(CLI::ExistingFile);
  app.add_option("--cafile", opts.cafile, "CA the bus's certificate must chain to")
    ->check(CLI::ExistingFile);
  app.add_option("--connect-timeout-ms", opts.connect_timeout_ms,
                 "give up connecting after this long (exit 3)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? exit_ok : exit_failed;
  }
  bool tls = !opts.certificate.empty() || !opts.key.empty() || !opts.cafile.empty();
  if (tls && (opts.certificate.empty() || opts.key.empty() || opts.cafile.empty())) {
    std::cerr << "paybus-admin: --certificate, --key and --cafile go together" << std::endl;
    return exit_failed;
  }
  // A bad command never leaves the console.
  for (const auto& command : opts.commands) {
    std::string error;
    if (!parse_admin_command(split_command_words(command), error)) {
      std::cerr << "paybus-admin: " << error << std::endl;
      if (opts.json_output)
        std::cout << json{{"error", {{"code", "bad_command"}, {"message", error}}}}.dump()
                  << std::endl;
      return exit_failed;
    }
  }
  if (opts.connect.empty())
    opts.connect = default_address();
  std::string host;
  uint16_t port = 0;
  if (!split_host_port(opts.connect, host, port)) {
    std::cerr << "paybus-admin: --connect: expected HOST:PORT, got '" << opts.connect << "'"
              << std::endl;
    return exit_failed;
  }

  caf::actor_system_config config;
  config.load<caf::io::middleman>();
  config.add_message_types<caf::id_block::paybus>();
  config.set("logger.verbosity", caf::atom("quiet"));
  // One worker that sleeps when idle: a console polling beside a busy bus
  // must not spin on its cores (work stealing polls before it sleeps).
  config.set("scheduler.max-threads", 1);
  config.set("scheduler.policy", caf::atom("sharing"));
  config.set("middleman.heartbeat-interval", caf::timespan{std::chrono::seconds{1}});
  config.set("middleman.connection-timeout", caf::timespan{std::chrono::seconds{5}});
  if (tls) {
    config.load<caf::openssl::manager>();
    config.openssl_certificate = opts.certificate;
    config.openssl_key = opts.key;
    config.openssl_cafile = opts.cafile;
  }
  caf::actor_system system{config};
  // A TLS handshake the bus refuses can leave the connection hanging.
  std::atomic<bool> connected{false};
  std::thread watchdog{[&] {
    auto deadline = std::chrono::steady_clock::now()
                    + std::chrono::milliseconds{opts.connect_timeout_ms};
    while (!connected.load() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds{20});
    if (!connected.load()) {
      std::cerr << "paybus-admin: cannot connect to " << opts.connect << ": no answer within "
                << opts.connect_timeout_ms << " ms" << std::endl;
      std::_Exit(exit_no_bus);
    }
  }};
  auto bus = tls ? caf::openssl::remote_actor<admin_actor>(system, host, port)
                 : caf::io::remote_actor<admin_actor>(system, host, port);
  connected.store(true);
  watchdog.join();
  if (!bus) {
    std::cerr << "paybus-admin: cannot connect to " << opts.connect << ": "
              << system.render(bus.error()) << std::endl;
    return exit_no_bus;
  }
  console session{system, *bus, opts};
  if (std::string error; tls && !session.sign_with(opts.certificate, opts.key, error)) {
    std::cerr << "paybus-admin: " << error << std::endl;
    return exit_failed;
  }
  if (!opts.commands.empty()) {
    for (const auto& command : opts.commands)
      if (int code = session.run(command); code != exit_ok)
        return code;
    return exit_ok;
  }
  if (isatty(STDIN_FILENO))
    return interactive(session);
  // Commands on stdin, one a line: stop at the first failure.
  std::string line;
  while (std::getline(std::cin, line)) {
    auto words = split_command_words(line);
    if (words.empty() || words[0].front() == '#')
      continue;
    if (words[0] == "quit" || words[0] == "exit")
      break;
    if (int code = session.run(line); code != exit_ok)
      return code;
  }
  return exit_ok;
}
