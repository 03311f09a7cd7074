// The admin console's command words: every command, every bad form.

#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "actors/admin/admin_command.hpp"
#include "common/pay_id.hpp"

using namespace paybus;
using kind = admin_command::kind;

namespace {

admin_command parsed(const std::string& line) {
  std::string error;
  auto command = parse_admin_command(split_command_words(line), error);
  INFO(line << ": " << error);
  REQUIRE(command);
  CHECK(error.empty());
  return *command;
}

std::string refused(const std::string& line) {
  std::string error;
  auto command = parse_admin_command(split_command_words(line), error);
  INFO(line);
  CHECK_FALSE(command);
  CHECK_FALSE(error.empty());
  CHECK(error.find('\n') == std::string::npos);
  return error;
}

// A pay_id as the bus issues them.
const std::string pay_id = pay_id_generator{9, 3, 0}.next(1'763'782'200'123);

}  // namespace

TEST_CASE("admin: words are split on runs of spaces and tabs") {
  CHECK(split_command_words("  channel\tweight  sim-a 5 \n")
        == std::vector<std::string>{"channel", "weight", "sim-a", "5"});
  CHECK(split_command_words("   ").empty());
}

TEST_CASE("admin: every command parses with its arguments") {
  CHECK(parsed("help").what == kind::help);
  CHECK(parsed("status").what == kind::status);
  CHECK(parsed("channels").what == kind::channels);
  CHECK(parsed("backlog").what == kind::backlog);
  auto weight = parsed("channel weight sim-a 250");
  CHECK(weight.what == kind::channel_weight);
  CHECK(weight.channel_id == "sim-a");
  CHECK(weight.number == 250);
  CHECK(parsed("channel weight sim-a 0").number == 0);
  CHECK(parsed("channel weight sim-a 10000").number == 10'000);
  auto disable = parsed("channel disable sim-b");
  CHECK(disable.what == kind::channel_enable);
  CHECK_FALSE(disable.on);
  CHECK(parsed("channel enable sim-b").on);
  CHECK(parsed("channel breaker sim-a open").on);
  CHECK_FALSE(parsed("channel breaker sim-a auto").on);
  CHECK(parsed("degrade").what == kind::degrade_list);
  auto degrade = parsed("degrade db_feed on");
  CHECK(degrade.what == kind::degrade_set);
  CHECK(degrade.which == degrade_switch::db_feed);
  CHECK(degrade.on);
  CHECK_FALSE(parsed("degrade order_repair off").on);
  CHECK(parsed("degrade reconciliation on").which == degrade_switch::reconciliation);
  CHECK(parsed("degrade webhooks on").which == degrade_switch::webhooks);
  auto payment = parsed("payment " + pay_id);
  CHECK(payment.what == kind::payment);
  CHECK(payment.pay_id == pay_id);
  CHECK(parsed("webhook resend " + pay_id).what == kind::webhook_resend);
  auto reconcile = parsed("reconcile sim-a 2026-12-03");
  CHECK(reconcile.what == kind::reconcile);
  CHECK(reconcile.date == "2026-12-03");
  CHECK(reconcile.file.empty());
  CHECK(parsed("reconcile sim-a 2026-12-03 /tmp/statement.csv").file == "/tmp/statement.csv");
  CHECK(parsed("audit").number == 20);
  CHECK(parsed("audit 1000").number == 1000);
  auto level = parsed("log level warn");
  CHECK(level.what == kind::log_level);
  CHECK(level.level == "warn");
}

TEST_CASE("admin: only commands that change the bus are audited") {
  for (const auto* line : {"channel weight a 1", "channel enable a", "channel breaker a open",
                           "degrade webhooks on", "reconcile a 2026-01-01", "log level info"})
    CHECK(parsed(line).changes());
  CHECK(parsed("webhook resend " + pay_id).changes());
  for (const auto* line : {"help", "status", "channels", "degrade", "backlog", "audit 5"})
    CHECK_FALSE(parsed(line).changes());
}

TEST_CASE("admin: every bad form is refused with one line") {
  CHECK(refused("").find("no command") != std::string::npos);
  CHECK(refused("frobnicate").find("unknown command 'frobnicate'") != std::string::npos);
  refused("help me");
  refused("status now");
  refused("channels all");
  refused("backlog 5");
  refused("channel");
  refused("channel rename sim-a b");
  refused("channel weight");
  refused("channel weight sim-a");
  refused("channel weight sim-a 5 6");
  CHECK(refused("channel weight sim-a 10001").find("0 to 10000") != std::string::npos);
  refused("channel weight sim-a -1");
  refused("channel weight sim-a +5");
  refused("channel weight sim-a 5.0");
  refused("channel weight sim-a ten");
  refused("channel weight sim-a 99999999999999999999");
  refused("channel disable");
  refused("channel enable a b");
  refused("channel breaker sim-a");
  refused("channel breaker sim-a closed");
  CHECK(refused("degrade nope on").find("unknown switch") != std::string::npos);
  refused("degrade webhooks");
  refused("degrade webhooks maybe");
  refused("degrade webhooks on now");
  refused("payment");
  refused("payment not-a-pay-id");
  refused("payment " + pay_id + " extra");
  refused("webhook");
  refused("webhook resend");
  refused("webhook send " + pay_id);
  refused("webhook resend 123");
  refused("reconcile");
  refused("reconcile sim-a");
  refused("reconcile sim-a 2026-13-01");
  refused("reconcile sim-a 03-12-2026");
  refused("reconcile sim-a 2026-12-03 a b");
  refused("audit 0");
  refused("audit 1001");
  refused("audit many");
  refused("audit 1 2");
  refused("log");
  refused("log level");
  refused("log level loud");
  refused("log verbosity debug");
}

TEST_CASE("admin: completion offers command words, then what may follow") {
  auto first = admin_completions({}, {"sim-a"});
  CHECK(std::find(first.begin(), first.end(), "degrade") != first.end());
  CHECK(admin_completions({"channel"}, {})
        == std::vector<std::string>{"weight", "enable", "disable", "breaker"});
  CHECK(admin_completions({"channel", "weight"}, {"sim-a", "sim-b"})
        == std::vector<std::string>{"sim-a", "sim-b"});
  CHECK(admin_completions({"channel", "breaker", "sim-a"}, {})
        == std::vector<std::string>{"open", "auto"});
  CHECK(admin_completions({"degrade"}, {}).size() == 4);
  CHECK(admin_completions({"degrade", "webhooks"}, {}) == std::vector<std::string>{"on", "off"});
  CHECK(admin_completions({"reconcile"}, {"sim-a"}) == std::vector<std::string>{"sim-a"});
  CHECK(admin_completions({"log", "level"}, {}).size() == 7);
  CHECK(admin_completions({"status"}, {}).empty());
}

TEST_CASE("admin: the cluster commands") {
  CHECK(parsed("cluster status").what == kind::cluster_status);
  CHECK_FALSE(parsed("cluster status").changes());
  CHECK(parsed("cluster form").what == kind::cluster_form);
  CHECK(parsed("cluster form").changes());
  auto adopt = parsed("cluster adopt 7 /var/lib/paybus-7/store");
  CHECK(adopt.what == kind::cluster_adopt);
  CHECK(adopt.number == 7);
  CHECK(adopt.file == "/var/lib/paybus-7/store");
  CHECK(adopt.changes());
  for (const auto* bad :
       {"cluster", "cluster adopt", "cluster adopt 7", "cluster adopt x /d", "cluster adopt 0 /d",
        "cluster adopt 100000 /d", "cluster form now", "cluster rebalance"}) {
    INFO(bad);
    auto why = refused(bad);
    CHECK((why.find("usage: cluster") != std::string::npos
           || why.find("is not a number from 1 to 99999") != std::string::npos));
  }
  std::vector<std::string> after_cluster = admin_completions({"cluster"}, {});
  CHECK(after_cluster == std::vector<std::string>{"status", "form", "adopt"});
}
