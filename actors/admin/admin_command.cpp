#include "actors/admin/admin_command.hpp"

#include <algorithm>

#include "common/clock.hpp"
#include "common/pay_id.hpp"

namespace paybus {

namespace {

bool parse_number(const std::string& text, int64_t minimum, int64_t maximum, int64_t& value) {
  if (text.empty() || text.size() > 9 || text.find_first_not_of("0123456789") != std::string::npos)
    return false;
  value = std::stoll(text);
  return value >= minimum && value <= maximum;
}

std::optional<admin_command> fail(std::string& error, std::string why) {
  error = std::move(why);
  return std::nullopt;
}

std::string usage(admin_command::kind what) {
  switch (what) {
    case admin_command::kind::channel_weight:
      return "usage: channel weight ID N (N from 0 to 10000)";
    case admin_command::kind::channel_enable:
      return "usage: channel enable ID | channel disable ID";
    case admin_command::kind::channel_breaker:
      return "usage: channel breaker ID open|auto";
    case admin_command::kind::degrade_set:
      return "usage: degrade [webhooks|db_feed|order_repair|reconciliation on|off]";
    case admin_command::kind::payment:
      return "usage: payment PAY_ID";
    case admin_command::kind::webhook_resend:
      return "usage: webhook resend PAY_ID";
    case admin_command::kind::reconcile:
      return "usage: reconcile CHANNEL DATE [FILE] (DATE as YYYY-MM-DD)";
    case admin_command::kind::audit:
      return "usage: audit [N] (N from 1 to 1000)";
    case admin_command::kind::log_level:
      return "usage: log level trace|debug|info|warn|error|critical|off";
    default:
      return "";
  }
}

}  // namespace

bool admin_command::changes() const {
  switch (what) {
    case kind::channel_weight:
    case kind::channel_enable:
    case kind::channel_breaker:
    case kind::degrade_set:
    case kind::webhook_resend:
    case kind::reconcile:
    case kind::log_level:
    case kind::cluster_form:
    case kind::cluster_adopt:
      return true;
    default:
      return false;
  }
}

std::vector<std::string> split_command_words(std::string_view line) {
  std::vector<std::string> words;
  size_t at = 0;
  while (at < line.size()) {
    auto start = line.find_first_not_of(" \t\r\n", at);
    if (start == std::string_view::npos)
      break;
    auto end = line.find_first_of(" \t\r\n", start);
    if (end == std::string_view::npos)
      end = line.size();
    words.emplace_back(line.substr(start, end - start));
    at = end;
  }
  return words;
}

const std::vector<std::string>& admin_log_levels() {
  static const std::vector<std::string> levels{"trace", "debug",    "info", "warn",
                                               "error", "critical", "off"};
  return levels;
}

std::optional<admin_command> parse_admin_command(const std::vector<std::string>& words,
                                                 std::string& error) {
  using kind = admin_command::kind;
  admin_command command;
  if (words.empty())
    return fail(error, "no command: type help");
  const auto& verb = words[0];
  auto count = words.size();
  auto simple = [&](kind what) -> std::optional<admin_command> {
    if (count != 1)
      return fail(error, verb + " takes no arguments");
    command.what = what;
    return command;
  };
  if (verb == "help")
    return simple(kind::help);
  if (verb == "status")
    return simple(kind::status);
  if (verb == "channels")
    return simple(kind::channels);
  if (verb == "backlog")
    return simple(kind::backlog);
  if (verb == "cluster") {
    if (count == 2 && words[1] == "status")
      command.what = kind::cluster_status;
    else if (count == 2 && words[1] == "form")
      command.what = kind::cluster_form;
    else if (count == 4 && words[1] == "adopt") {
      command.what = kind::cluster_adopt;
      if (!parse_number(words[2], 1, 99999, command.number))
        return fail(error, "instance '" + words[2] + "' is not a number from 1 to 99999");
      command.file = words[3];
    } else
      return fail(error, "usage: cluster status | cluster form | cluster adopt INSTANCE STORE_DIR");
    return command;
  }
  if (verb == "channel") {
    if (count < 2)
      return fail(error, "usage: channel weight|enable|disable|breaker ID ...");
    const auto& sub = words[1];
    if (sub == "weight") {
      command.what = kind::channel_weight;
      if (count != 4)
        return fail(error, usage(command.what));
      if (!parse_number(words[3], 0, max_channel_weight, command.number))
        return fail(error, "weight '" + words[3] + "' is not a whole number from 0 to 10000");
    } else if (sub == "enable" || sub == "disable") {
      command.what = kind::channel_enable;
      command.on = sub == "enable";
      if (count != 3)
        return fail(error, usage(command.what));
    } else if (sub == "breaker") {
      command.what = kind::channel_breaker;
      if (count != 4 || (words[3] != "open" && words[3] != "auto"))
        return fail(error, usage(command.what));
      command.on = words[3] == "open";
    } else {
      return fail(error, "unknown channel command '" + sub
                           + "': channel weight|enable|disable|breaker ID ...");
    }
    command.channel_id = words[2];
    return command;
  }
  if (verb == "degrade") {
    if (count == 1) {
      command.what = kind::degrade_list;
      return command;
    }
    command.what = kind::degrade_set;
    if (count != 3)
      return fail(error, usage(command.what));
    auto which = parse_degrade_switch(words[1]);
    if (!which)
      return fail(error, "unknown switch '" + words[1]
                           + "': webhooks, db_feed, order_repair or reconciliation");
    if (words[2] != "on" && words[2] != "off")
      return fail(error, usage(command.what));
    command.which = *which;
    command.on = words[2] == "on";
    return command;
  }
  if (verb == "payment") {
    command.what = kind::payment;
    if (count != 2)
      return fail(error, usage(command.what));
    if (!parse_pay_id(words[1]))
      return fail(error, "'" + words[1] + "' is not a pay_id");
    command.pay_id = words[1];
    return command;
  }
  if (verb == "webhook") {
    command.what = kind::webhook_resend;
    if (count != 3 || words[1] != "resend")
      return fail(error, usage(command.what));
    if (!parse_pay_id(words[2]))
      return fail(error, "'" + words[2] + "' is not a pay_id");
    command.pay_id = words[2];
    return command;
  }
  if (verb == "reconcile") {
    command.what = kind::reconcile;
    if (count != 3 && count != 4)
      return fail(error, usage(command.what));
    int64_t start = 0;
    if (!parse_utc_day(words[2], start))
      return fail(error, "date '" + words[2] + "' is not a day as YYYY-MM-DD");
    command.channel_id = words[1];
    command.date = words[2];
    if (count == 4)
      command.file = words[3];
    return command;
  }
  if (verb == "audit") {
    command.what = kind::audit;
    command.number = 20;
    if (count > 2)
      return fail(error, usage(command.what));
    if (count == 2 && !parse_number(words[1], 1, max_audit_entries, command.number))
      return fail(error, "'" + words[1] + "' is not a whole number from 1 to 1000");
    return command;
  }
  if (verb == "log") {
    command.what = kind::log_level;
    if (count != 3 || words[1] != "level")
      return fail(error, usage(command.what));
    const auto& levels = admin_log_levels();
    if (std::find(levels.begin(), levels.end(), words[2]) == levels.end())
      return fail(error, "unknown level '" + words[2] + "': " + usage(command.what).substr(7));
    command.level = words[2];
    return command;
  }
  return fail(error, "unknown command '" + verb + "': type help");
}

const std::vector<std::string>& admin_command_help() {
  static const std::vector<std::string> lines{
    "help                            lists commands",
    "status                          the instance at a glance",
    "channels                        every channel: weight, enabled, breaker, counts since start",
    "channel weight ID N             sets the routing weight live (0..10000)",
    "channel disable ID              no new payments to it (what it holds is still asked)",
    "channel enable ID               takes new payments again",
    "channel breaker ID open|auto    holds the breaker open, or hands it back to the failure rules",
    "degrade                         the switches of non-core work (true = paused)",
    "degrade SWITCH on|off           pauses or resumes webhooks, db_feed, order_repair, reconciliation",
    "backlog                         what waits: database rows, webhooks, unfinished payments",
    "payment PAY_ID                  everything the local store holds of a payment",
    "webhook resend PAY_ID           delivers a payment's webhook again now (same event_id)",
    "reconcile CHANNEL DATE [FILE]   reconciles a channel's day now and waits for the summary",
    "audit [N]                       the last N admin changes (default 20)",
    "log level LEVEL                 trace, debug, info, warn, error, critical or off",
    "cluster status                  members, the slot table and its epoch",
    "cluster form                    spreads the slots over the instances up now (once: no table yet)",
    "cluster adopt INSTANCE DIR      serves a dead instance from a copy of its store (DIR/store)",
  };
  return lines;
}

std::vector<std::string> admin_completions(const std::vector<std::string>& before,
                                           const std::vector<std::string>& channel_ids) {
  if (before.empty())
    return {"help",    "status",    "channels", "channel", "degrade", "backlog", "payment",
            "webhook", "reconcile", "audit",    "log",     "cluster", "quit",    "exit"};
  const auto& verb = before[0];
  if (verb == "channel") {
    if (before.size() == 1)
      return {"weight", "enable", "disable", "breaker"};
    if (before.size() == 2)
      return channel_ids;
    if (before.size() == 3 && before[1] == "breaker")
      return {"open", "auto"};
  }
  if (verb == "degrade") {
    if (before.size() == 1) {
      std::vector<std::string> names;
      for (auto which : all_degrade_switches)
        names.emplace_back(to_string(which));
      return names;
    }
    if (before.size() == 2)
      return {"on", "off"};
  }
  if (verb == "reconcile" && before.size() == 1)
    return channel_ids;
  if (verb == "webhook" && before.size() == 1)
    return {"resend"};
  if (verb == "cluster" && before.size() == 1)
    return {"status", "form", "adopt"};
  if (verb == "log") {
    if (before.size() == 1)
      return {"level"};
    if (before.size() == 2)
      return admin_log_levels();
  }
  return {};
}

}  // namespace paybus
