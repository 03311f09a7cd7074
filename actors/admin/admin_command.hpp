#pragma once

// The admin console's commands (API.md section 8) as words, parsed into a
// plain value. Pure: paybus-admin parses a line before it sends it (a bad
// form never leaves the console), and the admin actor parses what it
// receives again (a console is a client like any other).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/live_switches.hpp"

namespace paybus {

struct admin_command {
  enum class kind : uint8_t {
    help,
    status,
    channels,
    channel_weight,   // channel weight ID N
    channel_enable,   // channel enable ID / channel disable ID (`on` false)
    channel_breaker,  // channel breaker ID open|auto (`on`: open)
    degrade_list,     // degrade
    degrade_set,      // degrade SWITCH on|off
    backlog,
    payment,         // payment PAY_ID
    webhook_resend,  // webhook resend PAY_ID
    reconcile,       // reconcile CHANNEL DATE [FILE]
    audit,           // audit [N]
    log_level,       // log level LEVEL
    cluster_status,  // cluster status
    cluster_form,    // cluster form
    cluster_adopt,   // cluster adopt INSTANCE STORE_DIR
  };
  kind what = kind::help;
  std::string channel_id;
  int64_t number = 0;  // a weight, or audit's N
  bool on = false;     // enabled, breaker forced open, switch paused
  degrade_switch which = degrade_switch::webhooks;
  std::string pay_id;
  std::string date;
  std::string file;
  std::string level;

  /// Whether it changes the bus (and is audited).
  bool changes() const;
};

constexpr int64_t max_channel_weight = 10'000;
constexpr int64_t max_audit_entries = 1'000;

/// Splits a typed line into words (runs of spaces and tabs separate them).
std::vector<std::string> split_command_words(std::string_view line);

/// Parses `words`; nullopt with a one-line `error` for a wrong command or a
/// bad number, date, pay_id, switch or level. Channel ids are checked by the
/// bus, which knows them.
std::optional<admin_command> parse_admin_command(const std::vector<std::string>& words,
                                                 std::string& error);

/// One line a command: its form and what it does (help).
const std::vector<std::string>& admin_command_help();

/// The words a command line can start with, and those that can follow
/// `channel`, `degrade` and so on (completion in the console).
std::vector<std::string> admin_completions(const std::vector<std::string>& words_before,
                                           const std::vector<std::string>& channel_ids);

/// The levels `log level` takes.
const std::vector<std::string>& admin_log_levels();

}  // namespace paybus
