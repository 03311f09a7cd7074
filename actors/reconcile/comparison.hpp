#pragma once

// The comparison of a channel's statement of one day with what the bus
// holds (API.md section 7), as a pure core: no actors, no files, no RocksDB.
// Its inputs are the parsed lines, a sorter, a view of the bus and a way to
// repair; its output is one class for every line and for every payment the
// bus holds as SUCCEEDED through that channel on that day.
//
// The run, in three passes, memory bounded whatever the statement's size:
// 1. every line that parses goes to the sorter (by pay_id, then line);
//    a malformed one is reported as it comes;
// 2. the sorted lines are walked beside the bus's SUCCEEDED payments of the
//    channel and day (the store's index, also in pay_id order): a pay_id's
//    first line is classed against the bus, its later lines are duplicates,
//    and an index entry no line named is missing at the channel, unless it
//    finished within 10 minutes of either end of the day;
// 3. those are looked up in the adjacent day's statement, when the channel
//    serves it.

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "actors/reconcile/statement.hpp"
#include "messages/types.hpp"

namespace paybus::reconciliation {

enum class line_class {
  matched,
  repaired,
  missing_here,
  missing_at_channel,
  amount_mismatch,
  status_mismatch,
  duplicate_line,
  malformed_line,
};
constexpr size_t class_count = 8;

std::string_view to_string(line_class what);

/// What the bus holds of one pay_id, as far as a statement line is concerned.
struct bus_payment {
  std::string pay_id;
  payment_status status = payment_status::processing;
  int64_t amount_minor = 0;  // the order's
  std::string currency;
  std::string routed_channel;  // empty: not routed yet
  // The result it holds, if any (final, or flagged: at another amount).
  std::optional<payment_result> result;
};

/// What a line, or a payment alone, is, and what to do.
struct verdict {
  line_class what = line_class::matched;
  std::string why;  // for people, in the report
};

/// Classes one line (the first of its pay_id) against what the bus holds of
/// it; `repaired` only says a repair is due. `channel_id` is the statement's.
verdict classify(const std::string& channel_id, const statement_line& line,
                 const std::optional<bus_payment>& bus);

/// A SUCCEEDED payment of the channel and day, from the store's index.
struct indexed_payment {
  std::string currency;
  payment_result result;
};

/// The bus as a run sees it.
class bus_view {
public:
  virtual ~bus_view() = default;
  /// What the bus holds of `pay_id`; nullopt if it holds no order for it.
  /// Throws std::runtime_error if the store cannot be read.
  virtual std::optional<bus_payment> lookup(const std::string& pay_id) = 0;
  /// Calls `visit` for each payment SUCCEEDED through `channel_id` on UTC
  /// day `day`, in pay_id order from the first after `after` (empty: from
  /// the first), until it returns false. Throws on a read error.
  virtual void day_payments(const std::string& channel_id, const std::string& day,
                            const std::string& after,
                            const std::function<bool(const indexed_payment&)>& visit)
    = 0;
  /// Writes `result` (source reconciliation) like any result; true if it
  /// made the payment final now. Throws if the store cannot write.
  virtual bool repair(const payment_result& result) = 0;
};

/// Sorts a statement's lines by pay_id, then line number.
class line_sorter {
public:
  virtual ~line_sorter() = default;
  virtual void add(const statement_line& line) = 0;
  /// Calls `visit` for each line added, sorted, until it returns false.
  virtual void sorted(const std::function<bool(const statement_line&)>& visit) = 0;
};

/// One class given: what the report writes (every class but `matched`).
struct finding {
  line_class what = line_class::matched;
  std::string why;
  std::optional<uint64_t> line;  // the statement's line number
  std::string statement_date;    // the statement the line is in
  std::optional<statement_line> fields;
  std::optional<malformed_line> raw;  // a malformed line
  std::optional<bus_payment> bus;
};

/// What a run is told.
struct run_inputs {
  std::string channel_id;
  std::string date;    // YYYY-MM-DD
  bool repair = true;  // false: report only (a `repaired` line is counted, not written)
  // Reads the statement of an adjacent day (date given) into `parser`-fed
  // lines; false if the channel does not serve it (then the payments near
  // that end count as missing at the channel).
  std::function<bool(const std::string& date, const statement_visitor& visit)> adjacent;
  std::function<void(const finding&)> report;  // every class but matched
  // Called every 65,536 lines read or classed, for a log line on a long run.
  std::function<void(const char* phase, uint64_t done)> progress;
};

struct run_counts {
  uint64_t lines = 0;  // data lines of the statement
  std::array<uint64_t, class_count> by_class{};

  uint64_t operator[](line_class what) const {
    return by_class[static_cast<size_t>(what)];
  }
};

/// Near an end of the day: a payment finished this close to midnight may be
/// in the adjacent day's statement.
constexpr int64_t boundary_ms = 10 * 60 * 1000;

/// Runs the comparison. `read_statement` feeds the statement's lines (it
/// is called once); returns the counts. Throws std::runtime_error when the
/// bus cannot be read or written (the run then fails; what it repaired is
/// durable, and a second run counts it matched).
class comparison {
public:
  comparison(run_inputs inputs, bus_view& bus, line_sorter& sorter);

  /// Pass 1: the statement's bytes, as they come.
  void feed(std::string_view bytes);
  /// Passes 2 and 3.
  run_counts finish();

private:
  void count(finding&& found);
  void step(const char* phase, uint64_t& done);
  void class_line(const statement_line& line, std::optional<bus_payment> bus);
  void unmatched(const indexed_payment& payment);

  run_inputs inputs_;
  bus_view& bus_;
  line_sorter& sorter_;
  statement_parser parser_;
  statement_visitor into_sorter_;
  run_counts counts_;
  uint64_t read_ = 0;
  uint64_t classed_ = 0;
  int64_t day_start_ms_ = 0;
  // Payments SUCCEEDED here near an end of the day that no line named, by
  // the adjacent day to look in.
  std::map<std::string, std::map<std::string, indexed_payment>> near_ends_;
};

/// The bus side of an indexed payment (SUCCEEDED through its channel).
bus_payment as_bus_payment(const indexed_payment& payment);

}  // namespace paybus::reconciliation
