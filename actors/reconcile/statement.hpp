#pragma once

// A channel's statement of one day (API.md section 4): CSV with the header
// channel_txn_id,pay_id,amount,currency,status,paid_at and one line per
// settled payment. Read as its bytes come, a line at a time, so that a
// statement of any size takes the same memory. Fields are split by libcsv
// (quotes as RFC 4180 has them); a quoted field never spans lines here: a
// line is a line of the file, so a report can name it.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

namespace paybus::reconciliation {

/// One data line that parsed.
struct statement_line {
  uint64_t number = 0;  // 1-based line of the file; the header is line 1
  std::string channel_txn_id;
  std::string pay_id;
  int64_t amount_minor = 0;
  std::string currency;
  bool succeeded = true;  // status SUCCEEDED; false: FAILED
  std::string paid_at;    // as written
  int64_t paid_at_ms = 0;
};

/// A line that did not parse, and why.
struct malformed_line {
  uint64_t number = 0;
  std::string text;  // the line, cut at 256 bytes
  std::string reason;
};

/// What a parser hands on, line by line.
struct statement_visitor {
  std::function<void(statement_line&&)> line;
  std::function<void(malformed_line&&)> malformed;
};

/// Splits bytes into lines (LF or CRLF, a UTF-8 byte order mark before the
/// header skipped) and each line into its six fields. Line 1 must be the
/// header; one that is not is a malformed line, and the lines after it are
/// read as data all the same. Empty lines are skipped (not data lines).
class statement_parser {
public:
  statement_parser();
  ~statement_parser();
  statement_parser(const statement_parser&) = delete;
  statement_parser& operator=(const statement_parser&) = delete;

  /// The next bytes of the statement.
  void feed(std::string_view bytes, const statement_visitor& visit);

  /// The end of the statement: a last line without its newline, and a
  /// statement with no header at all (an empty body) is malformed.
  void finish(const statement_visitor& visit);

  /// Data lines seen so far (parsed or not; the header and empty lines not counted).
  uint64_t data_lines() const {
    return data_lines_;
  }

private:
  void take_line(std::string_view line, const statement_visitor& visit);

  struct fields;  // libcsv's parser
  std::unique_ptr<fields> fields_;
  std::string partial_;  // a line whose end has not come yet
  uint64_t number_ = 0;
  uint64_t data_lines_ = 0;
  static constexpr size_t max_line_bytes = 4096;
};

}  // namespace paybus::reconciliation
