#include "actors/reconcile/statement.hpp"

#include <csv.h>

#include <algorithm>
#include <charconv>
#include <vector>

#include "common/clock.hpp"
#include "common/text.hpp"

namespace paybus::reconciliation {

namespace {

constexpr std::string_view header = "channel_txn_id,pay_id,amount,currency,status,paid_at";
constexpr std::string_view byte_order_mark = "\xEF\xBB\xBF";

int no_spaces(unsigned char) {
  return 0;  // a space is part of its field (" 100" is not an amount)
}

bool parse_amount(const std::string& text, int64_t& amount) {
  // Digits only (no sign, no spaces), at most 10^15 minor units: beyond any payment.
  uint64_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || text.size() > 15 || error != std::errc{} || end != text.data() + text.size())
    return false;
  amount = static_cast<int64_t>(value);
  return true;
}

bool valid_currency(const std::string& text) {
  return text.size() == 3
         && std::all_of(text.begin(), text.end(), [](char c) { return c >= 'A' && c <= 'Z'; });
}

}  // namespace

/// libcsv's parser and the fields of the line it is on.
struct statement_parser::fields {
  csv_parser parser{};
  std::vector<std::string> values;
  size_t count = 0;

  fields() {
    csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI);
    csv_set_space_func(&parser, no_spaces);
  }
  ~fields() {
    csv_free(&parser);
  }

  static void on_field(void* data, size_t size, void* self) {
    auto& me = *static_cast<fields*>(self);
    if (me.count < 7) {  // more than six is malformed whatever they hold
      if (me.values.size() <= me.count)
        me.values.emplace_back();
      me.values[me.count].assign(static_cast<const char*>(data), size);
    }
    ++me.count;
  }
  static void on_record(int, void*) {
  }

  /// Splits one line; false if libcsv finds it malformed (a stray quote, an
  /// unterminated one).
  bool split(std::string_view line) {
    count = 0;
    bool ok = csv_parse(&parser, line.data(), line.size(), on_field, on_record, this)
              == line.size();
    ok = csv_fini(&parser, on_field, on_record, this) == 0 && ok;
    if (!ok) {  // start clean for the next line
      csv_free(&parser);
      csv_init(&parser, CSV_STRICT | CSV_STRICT_FINI);
      csv_set_space_func(&parser, no_spaces);
    }
    return ok;
  }
};

statement_parser::statement_parser() : fields_(std::make_unique<fields>()) {
}

statement_parser::~statement_parser() = default;

void statement_parser::feed(std::string_view bytes, const statement_visitor& visit) {
  while (!bytes.empty()) {
    auto end = bytes.find('\n');
    if (end == std::string_view::npos) {
      if (partial_.size() <= max_line_bytes)
        partial_.append(bytes.substr(0, max_line_bytes + 1 - partial_.size()));
      return;
    }
    if (partial_.empty()) {
      take_line(bytes.substr(0, end), visit);
    } else {
      if (partial_.size() <= max_line_bytes)
        partial_.append(bytes.substr(0, std::min(end, max_line_bytes + 1 - partial_.size())));
      take_line(partial_, visit);
      partial_.clear();
    }
    bytes.remove_prefix(end + 1);
  }
}

void statement_parser::finish(const statement_visitor& visit) {
  if (!partial_.empty()) {
    take_line(partial_, visit);
    partial_.clear();
  }
  if (number_ == 0)
    visit.malformed({1, "", "bad header: the statement is empty"});
}

void statement_parser::take_line(std::string_view line, const statement_visitor& visit) {
  ++number_;
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  auto cut = [](std::string_view text) { return std::string{text.substr(0, 256)}; };
  if (number_ == 1) {
    if (line.substr(0, byte_order_mark.size()) == byte_order_mark)
      line.remove_prefix(byte_order_mark.size());
    if (line != header)
      visit.malformed({1, cut(line), "bad header: expected " + std::string{header}});
    return;
  }
  if (line.empty())
    return;
  ++data_lines_;
  malformed_line bad{number_, cut(line), ""};
  if (line.size() > max_line_bytes) {
    bad.reason = "a line longer than " + std::to_string(max_line_bytes) + " bytes";
    return visit.malformed(std::move(bad));
  }
  statement_line parsed;
  parsed.number = number_;
  if (!fields_->split(line)) {
    bad.reason = "not CSV (a stray or unterminated quote)";
    return visit.malformed(std::move(bad));
  }
  if (fields_->count != 6) {
    bad.reason = std::to_string(fields_->count) + " fields, not 6";
    return visit.malformed(std::move(bad));
  }
  auto& values = fields_->values;
  if (values[0].empty() || !valid_channel_txn_id(values[0]))
    bad.reason = "bad channel_txn_id";
  else if (values[1].empty() || values[1].size() > 64 || !printable_text(values[1]))
    bad.reason = "bad pay_id";
  else if (!parse_amount(values[2], parsed.amount_minor))
    bad.reason = "bad amount";
  else if (!valid_currency(values[3]))
    bad.reason = "bad currency";
  else if (values[4] != "SUCCEEDED" && values[4] != "FAILED")
    bad.reason = "bad status";
  else if (!parse_rfc3339_ms(values[5], parsed.paid_at_ms))
    bad.reason = "bad paid_at";
  if (!bad.reason.empty())
    return visit.malformed(std::move(bad));
  parsed.channel_txn_id = std::move(values[0]);
  parsed.pay_id = std::move(values[1]);
  parsed.currency = std::move(values[3]);
  parsed.succeeded = values[4] == "SUCCEEDED";
  parsed.paid_at = std::move(values[5]);
  values.clear();
  visit.line(std::move(parsed));
}

}  // namespace paybus::reconciliation
