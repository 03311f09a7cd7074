#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "actors/reconcile/statement.hpp"

using namespace paybus::reconciliation;

namespace {

struct parsed {
  std::vector<statement_line> lines;
  std::vector<malformed_line> bad;
  uint64_t data_lines = 0;
};

/// Parses `text` fed in pieces of `piece` bytes (a line may straddle them).
parsed parse(const std::string& text, size_t piece = 7) {
  parsed out;
  statement_visitor visit;
  visit.line = [&](statement_line&& line) { out.lines.push_back(std::move(line)); };
  visit.malformed = [&](malformed_line&& bad) { out.bad.push_back(std::move(bad)); };
  statement_parser parser;
  for (size_t at = 0; at < text.size(); at += piece)
    parser.feed(std::string_view{text}.substr(at, piece), visit);
  parser.finish(visit);
  out.data_lines = parser.data_lines();
  return out;
}

const std::string header = "channel_txn_id,pay_id,amount,currency,status,paid_at\n";

}  // namespace

TEST_CASE("a statement's lines parse, with their line numbers") {
  auto out = parse(header
                   + "T-1,P-1,100,CNY,SUCCEEDED,2026-12-03T10:00:00.000Z\n"
                     "T-2,P-2,250,USD,FAILED,2026-12-03T11:00:00Z\n");
  REQUIRE(out.bad.empty());
  REQUIRE(out.lines.size() == 2);
  CHECK(out.lines[0].number == 2);
  CHECK(out.lines[0].channel_txn_id == "T-1");
  CHECK(out.lines[0].pay_id == "P-1");
  CHECK(out.lines[0].amount_minor == 100);
  CHECK(out.lines[0].currency == "CNY");
  CHECK(out.lines[0].succeeded);
  CHECK(out.lines[0].paid_at_ms == 1'796'292'000'000);
  CHECK(out.lines[1].number == 3);
  CHECK_FALSE(out.lines[1].succeeded);
  CHECK(out.data_lines == 2);
}

TEST_CASE("CRLF line ends, a byte order mark, quoted fields and no last newline are read") {
  auto out = parse("\xEF\xBB\xBF"
                   "channel_txn_id,pay_id,amount,currency,status,paid_at\r\n"
                   "\"T,1\",P-1,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z\r\n"
                   "T-2,\"P-2\",100,CNY,SUCCEEDED,2026-12-03T10:00:00Z",
                   1);
  REQUIRE(out.bad.empty());
  REQUIRE(out.lines.size() == 2);
  CHECK(out.lines[0].channel_txn_id == "T,1");
  CHECK(out.lines[1].pay_id == "P-2");
  CHECK(out.lines[1].number == 3);
}

TEST_CASE("an empty statement has no data lines, and empty lines are not data") {
  auto out = parse(header);
  CHECK(out.bad.empty());
  CHECK(out.lines.empty());
  CHECK(out.data_lines == 0);
  out = parse(header + "\n\nT-1,P-1,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z\n\n");
  CHECK(out.bad.empty());
  REQUIRE(out.lines.size() == 1);
  CHECK(out.lines[0].number == 4);
  CHECK(out.data_lines == 1);
}

TEST_CASE(
  "every kind of malformed line is named with its number, and the lines after it are read") {
  std::vector<std::pair<std::string, std::string>> cases = {
    {"T-1,P-1,100,CNY,SUCCEEDED", "5 fields"},
    {"T-1,P-1,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z,extra", "7 fields"},
    {"T-1,P-1,1.00,CNY,SUCCEEDED,2026-12-03T10:00:00Z", "bad amount"},
    {"T-1,P-1,-100,CNY,SUCCEEDED,2026-12-03T10:00:00Z", "bad amount"},
    {"T-1,P-1, 100,CNY,SUCCEEDED,2026-12-03T10:00:00Z", "bad amount"},
    {"T-1,P-1,,CNY,SUCCEEDED,2026-12-03T10:00:00Z", "bad amount"},
    {"T-1,P-1,99999999999999999999,CNY,SUCCEEDED,2026-12-03T10:00:00Z", "bad amount"},
    {"T-1,P-1,100,cny,SUCCEEDED,2026-12-03T10:00:00Z", "bad currency"},
    {"T-1,P-1,100,CNY,PAID,2026-12-03T10:00:00Z", "bad status"},
    {"T-1,P-1,100,CNY,SUCCEEDED,2026-12-03 10:00:00", "bad paid_at"},
    {"T-1,P-1,100,CNY,SUCCEEDED,2026-02-30T10:00:00Z", "bad paid_at"},
    {"T-1,,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z", "bad pay_id"},
    {",P-1,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z", "bad channel_txn_id"},
    {"\"T-1,P-1,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z", "quote"},
    {"T\"-1,P-1,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z", "quote"},
    {"T-1,P-1,100,CNY,SUCC", "fields"},  // a cut line
    {std::string(5000, 'x'), "longer than"},
  };
  for (const auto& [text, reason] : cases) {
    INFO(text.substr(0, 80));
    auto out = parse(header + text + "\nT-9,P-9,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z\n", 13);
    REQUIRE(out.bad.size() == 1);
    CHECK(out.bad[0].number == 2);
    CHECK_THAT(out.bad[0].reason, Catch::Contains(reason));
    CHECK(out.bad[0].text.size() <= 256);
    REQUIRE(out.lines.size() == 1);  // the next line is read
    CHECK(out.lines[0].pay_id == "P-9");
    CHECK(out.lines[0].number == 3);
    CHECK(out.data_lines == 2);
  }
}

TEST_CASE("a missing or wrong header is a malformed line 1, and the data lines are read") {
  auto out = parse("T-1,P-1,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z\n"
                   "T-2,P-2,100,CNY,SUCCEEDED,2026-12-03T10:00:00Z\n");
  REQUIRE(out.bad.size() == 1);
  CHECK(out.bad[0].number == 1);
  CHECK_THAT(out.bad[0].reason, Catch::Contains("bad header"));
  REQUIRE(out.lines.size() == 1);
  CHECK(out.lines[0].pay_id == "P-2");
  CHECK(out.data_lines == 1);

  out = parse("");
  REQUIRE(out.bad.size() == 1);
  CHECK(out.bad[0].number == 1);
  CHECK_THAT(out.bad[0].reason, Catch::Contains("empty"));
}
