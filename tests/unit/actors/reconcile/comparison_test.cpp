#include <catch2/catch.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "actors/reconcile/comparison.hpp"
#include "common/clock.hpp"

using namespace paybus;
using namespace paybus::reconciliation;

namespace {

const std::string header = "channel_txn_id,pay_id,amount,currency,status,paid_at\n";
const std::string day = "2026-12-03";
const int64_t midnight = 1'796'256'000'000;  // 2026-12-03T00:00:00Z

/// The bus, in memory: orders and results, with the rules of the store
/// (a repair joins a PROCESSING payment; the index lists SUCCEEDED ones).
class memory_bus : public bus_view {
public:
  void order(const std::string& pay_id, int64_t amount, const std::string& routed = "sim-a") {
    bus_payment bus;
    bus.pay_id = pay_id;
    bus.amount_minor = amount;
    bus.currency = "CNY";
    bus.routed_channel = routed;
    payments[pay_id] = bus;
  }
  void succeed(const std::string& pay_id, const std::string& channel, int64_t finished_ms,
               const std::string& txn) {
    auto& bus = payments.at(pay_id);
    bus.status = payment_status::succeeded;
    payment_result result;
    result.pay_id = pay_id;
    result.channel_id = channel;
    result.channel_txn_id = txn;
    result.amount_minor = bus.amount_minor;
    result.finished_at_ms = finished_ms;
    bus.result = result;
  }
  void end(const std::string& pay_id, payment_status status) {
    payments.at(pay_id).status = status;
  }

  std::optional<bus_payment> lookup(const std::string& pay_id) override {
    ++lookups;
    auto found = payments.find(pay_id);
    if (found == payments.end())
      return std::nullopt;
    return found->second;
  }
  void day_payments(const std::string& channel_id, const std::string& wanted,
                    const std::string& after,
                    const std::function<bool(const indexed_payment&)>& visit) override {
    for (const auto& [pay_id, bus] : payments)
      if (pay_id > after && bus.status == payment_status::succeeded && bus.result
          && bus.result->channel_id == channel_id && utc_day(bus.result->finished_at_ms) == wanted)
        if (!visit({bus.currency, *bus.result}))
          return;
  }
  bool repair(const payment_result& result) override {
    auto& bus = payments.at(result.pay_id);
    if (bus.status != payment_status::processing)
      return false;
    repairs.push_back(result);
    bus.status = payment_status::succeeded;
    bus.result = result;
    return true;
  }

  std::map<std::string, bus_payment> payments;
  std::vector<payment_result> repairs;
  int lookups = 0;
};

class memory_sorter : public line_sorter {
public:
  void add(const statement_line& line) override {
    lines.emplace(std::make_pair(line.pay_id, line.number), line);
  }
  void sorted(const std::function<bool(const statement_line&)>& visit) override {
    for (const auto& [key, line] : lines)
      if (!visit(line))
        return;
  }
  std::map<std::pair<std::string, uint64_t>, statement_line> lines;
};

std::string line(const std::string& txn, const std::string& pay_id, int64_t amount, int64_t paid_ms,
                 const std::string& status = "SUCCEEDED", const std::string& currency = "CNY") {
  return txn + "," + pay_id + "," + std::to_string(amount) + "," + currency + "," + status + ","
         + format_rfc3339_ms(paid_ms) + "\n";
}

struct outcome {
  run_counts counts;
  std::map<std::string, line_class> by_pay_id;  // of what was reported
  std::vector<finding> findings;
};

outcome run(memory_bus& bus, const std::string& statement,
            std::map<std::string, std::string> adjacent = {}, bool repair = true) {
  memory_sorter sorter;
  outcome out;
  run_inputs inputs;
  inputs.channel_id = "sim-a";
  inputs.date = day;
  inputs.repair = repair;
  inputs.report = [&](const finding& found) {
    out.findings.push_back(found);
    std::string id = found.fields ? found.fields->pay_id : found.bus ? found.bus->pay_id : "";
    if (!id.empty())
      out.by_pay_id[id] = found.what;
  };
  inputs.adjacent = [&](const std::string& date, const statement_visitor& visit) {
    auto found = adjacent.find(date);
    if (found == adjacent.end())
      return false;
    statement_parser parser;
    parser.feed(found->second, visit);
    parser.finish(visit);
    return true;
  };
  comparison compare{inputs, bus, sorter};
  for (size_t at = 0; at < statement.size(); at += 10)
    compare.feed(std::string_view{statement}.substr(at, 10));
  out.counts = compare.finish();
  return out;
}

uint64_t total(const run_counts& counts) {
  uint64_t sum = 0;
  for (auto n : counts.by_class)
    sum += n;
  return sum;
}

}  // namespace

TEST_CASE("every class of a statement line, each counted once") {
  memory_bus bus;
  int64_t noon = midnight + 12 * 3600 * 1000;
  bus.order("P-matched", 100);
  bus.succeed("P-matched", "sim-a", noon, "T-m");
  bus.order("P-repair", 200);  // PROCESSING: its notification was lost
  bus.order("P-short", 300);
  bus.succeed("P-short", "sim-a", noon, "T-s");  // not in the statement
  bus.order("P-amount", 400);
  bus.succeed("P-amount", "sim-a", noon, "T-a");
  bus.order("P-closed", 500);
  bus.end("P-closed", payment_status::closed);
  bus.order("P-other", 600, "sim-b");
  bus.succeed("P-other", "sim-b", noon, "T-o");
  bus.order("P-dup", 700);
  bus.succeed("P-dup", "sim-a", noon, "T-d");
  std::string statement = header + line("T-m", "P-matched", 100, noon)
                          + line("T-r", "P-repair", 200, noon) + line("T-a", "P-amount", 401, noon)
                          + line("T-c", "P-closed", 500, noon) + line("T-o", "P-other", 600, noon)
                          + line("T-d", "P-dup", 700, noon) + line("T-d", "P-dup", 700, noon)
                          + line("T-x", "P-foreign", 800, noon)
                          + "T-bad,P-bad,12x,CNY,SUCCEEDED,2026-12-03T12:00:00Z\n";
  auto out = run(bus, statement);
  CHECK(out.counts.lines == 9);
  CHECK(out.counts[line_class::matched] == 2);  // P-matched, and P-dup's first line
  CHECK(out.counts[line_class::repaired] == 1);
  CHECK(out.counts[line_class::missing_here] == 1);
  CHECK(out.counts[line_class::missing_at_channel] == 1);
  CHECK(out.counts[line_class::amount_mismatch] == 1);
  CHECK(out.counts[line_class::status_mismatch] == 2);  // CLOSED, and through sim-b
  CHECK(out.counts[line_class::duplicate_line] == 1);
  CHECK(out.counts[line_class::malformed_line] == 1);
  // Every line and every SUCCEEDED payment of the day here in one class:
  // 9 lines, and P-short with no line.
  CHECK(total(out.counts) == 10);
  CHECK(out.by_pay_id["P-repair"] == line_class::repaired);
  CHECK(out.by_pay_id["P-foreign"] == line_class::missing_here);
  CHECK(out.by_pay_id["P-short"] == line_class::missing_at_channel);
  CHECK(out.by_pay_id["P-amount"] == line_class::amount_mismatch);
  CHECK(out.by_pay_id["P-closed"] == line_class::status_mismatch);
  CHECK(out.by_pay_id["P-other"] == line_class::status_mismatch);
  CHECK(out.by_pay_id["P-dup"] == line_class::duplicate_line);
  for (const auto& found : out.findings)
    if (found.what == line_class::malformed_line) {
      CHECK(found.line == 10u);
      CHECK_FALSE(found.fields);
    } else if (found.what == line_class::missing_at_channel) {
      CHECK_FALSE(found.line);
      REQUIRE(found.bus);
      CHECK(found.bus->pay_id == "P-short");
    }

  // Only `repaired` wrote anything, and only the line's result, as reconciliation.
  REQUIRE(bus.repairs.size() == 1);
  CHECK(bus.repairs[0].pay_id == "P-repair");
  CHECK(bus.repairs[0].source == result_source::reconciliation);
  CHECK(bus.repairs[0].channel_txn_id == "T-r");
  CHECK(bus.repairs[0].amount_minor == 200);
  CHECK(bus.payments["P-closed"].status == payment_status::closed);
  CHECK(bus.payments["P-amount"].result->amount_minor == 400);

  SECTION("a second run repairs nothing, and counts the repair matched") {
    auto again = run(bus, statement);
    CHECK(bus.repairs.size() == 1);
    CHECK(again.counts[line_class::repaired] == 0);
    CHECK(again.counts[line_class::matched] == 3);
    CHECK(again.counts[line_class::missing_at_channel] == 1);
    CHECK(total(again.counts) == 10);
  }
}

TEST_CASE("a line is repaired only at the order's amount, through the channel it is routed to") {
  memory_bus bus;
  int64_t noon = midnight + 12 * 3600 * 1000;
  bus.order("P-1", 100);
  bus.order("P-2", 100, "sim-b");  // routed elsewhere: never repaired from sim-a's word
  bus.order("P-3", 100, "");       // not routed yet: the channel's word settles it
  bus.order("P-4", 100);
  auto out = run(bus, header + line("T-1", "P-1", 101, noon) + line("T-2", "P-2", 100, noon)
                        + line("T-3", "P-3", 100, noon)
                        + line("T-4", "P-4", 100, noon, "SUCCEEDED", "USD"));
  CHECK(out.by_pay_id["P-1"] == line_class::amount_mismatch);
  CHECK(out.by_pay_id["P-2"] == line_class::status_mismatch);
  CHECK(out.by_pay_id["P-3"] == line_class::repaired);
  CHECK(out.by_pay_id["P-4"] == line_class::amount_mismatch);
  REQUIRE(bus.repairs.size() == 1);
  CHECK(bus.repairs[0].pay_id == "P-3");
  CHECK(bus.payments["P-1"].status == payment_status::processing);
}

TEST_CASE("report only counts what it would repair and writes nothing") {
  memory_bus bus;
  bus.order("P-1", 100);
  auto out = run(bus, header + line("T-1", "P-1", 100, midnight + 1000), {}, false);
  CHECK(out.counts[line_class::repaired] == 1);
  CHECK(bus.repairs.empty());
  CHECK(bus.payments["P-1"].status == payment_status::processing);
}

TEST_CASE("a FAILED line agrees with a payment that took no money, and only with one") {
  memory_bus bus;
  bus.order("P-1", 100);
  bus.end("P-1", payment_status::failed);
  bus.order("P-2", 100);
  bus.succeed("P-2", "sim-a", midnight + 1000, "T-2");
  bus.order("P-3", 100);
  auto out = run(bus, header + line("T-1", "P-1", 100, midnight + 1000, "FAILED")
                        + line("T-2", "P-2", 100, midnight + 1000, "FAILED")
                        + line("T-3", "P-3", 100, midnight + 1000, "FAILED"));
  CHECK(out.counts[line_class::matched] == 1);
  CHECK(out.by_pay_id["P-2"] == line_class::status_mismatch);
  CHECK(out.by_pay_id["P-3"] == line_class::status_mismatch);  // never repaired to FAILED
  CHECK(bus.repairs.empty());
}

TEST_CASE("payments near midnight are looked up in the adjacent day's statement") {
  memory_bus bus;
  int64_t early = midnight + 5 * 60 * 1000;              // 00:05 on the day
  int64_t late = midnight + 86'400'000 - 3 * 60 * 1000;  // 23:57 on the day
  int64_t before = midnight - 2 * 60 * 1000;             // 23:58 the day before
  bus.order("P-early", 100);
  bus.succeed("P-early", "sim-a", early, "T-e");  // the channel put it in the day before
  bus.order("P-late", 100);
  bus.succeed("P-late", "sim-a", late, "T-l");  // in the day after
  bus.order("P-late-lost", 100);
  bus.succeed("P-late-lost", "sim-a", late, "T-ll");  // in neither
  bus.order("P-before", 100);
  bus.succeed("P-before", "sim-a", before, "T-b");  // finished the day before, in this statement
  bus.order("P-noon", 100);
  bus.succeed("P-noon", "sim-a", midnight + 43'200'000, "T-n");  // far from midnight, missing
  std::map<std::string, std::string> adjacent{
    {"2026-12-02", header + line("T-e", "P-early", 100, midnight - 60'000)},
    {"2026-12-04", header + line("T-l", "P-late", 100, midnight + 86'400'000 + 60'000)}};
  auto out = run(bus, header + line("T-b", "P-before", 100, midnight + 30'000), adjacent);
  CHECK(out.counts[line_class::matched] == 3);  // P-before's line, P-early, P-late
  CHECK(out.counts[line_class::missing_at_channel] == 2);
  CHECK(out.by_pay_id["P-late-lost"] == line_class::missing_at_channel);
  CHECK(out.by_pay_id["P-noon"] == line_class::missing_at_channel);
  CHECK(out.by_pay_id.count("P-early") == 0);  // matched: not reported
  CHECK(out.counts.lines == 1);

  SECTION("when the channel serves no adjacent statement, they count as missing") {
    auto alone = run(bus, header + line("T-b", "P-before", 100, midnight + 30'000));
    CHECK(alone.counts[line_class::matched] == 1);
    CHECK(alone.counts[line_class::missing_at_channel] == 4);
  }
}

TEST_CASE("an empty statement leaves every payment of the day missing at the channel") {
  memory_bus bus;
  for (int i = 0; i < 3; ++i) {
    auto id = "P-" + std::to_string(i);
    bus.order(id, 100);
    bus.succeed(id, "sim-a", midnight + 3'600'000, "T-" + std::to_string(i));
  }
  auto out = run(bus, header);
  CHECK(out.counts.lines == 0);
  CHECK(out.counts[line_class::missing_at_channel] == 3);
  CHECK(total(out.counts) == 3);
}

TEST_CASE("the index is walked in slices: a day of many payments, few lookups") {
  memory_bus bus;
  std::string statement = header;
  for (int i = 0; i < 10'000; ++i) {
    char id[16];
    std::snprintf(id, sizeof id, "P-%05d", i);
    bus.order(id, 100);
    bus.succeed(id, "sim-a", midnight + 3'600'000 + i, std::string{"T-"} + id);
    if (i % 1000 != 7)
      statement += line(std::string{"T-"} + id, id, 100, midnight + 3'600'000 + i);
  }
  auto out = run(bus, statement);
  CHECK(out.counts[line_class::matched] == 9'990);
  CHECK(out.counts[line_class::missing_at_channel] == 10);
  CHECK(bus.lookups == 0);  // every line found in the index
}
