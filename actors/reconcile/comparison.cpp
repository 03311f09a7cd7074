#include "actors/reconcile/comparison.hpp"

#include <set>
#include <stdexcept>
#include <utility>
#include <vector>

#include "common/clock.hpp"

namespace paybus::reconciliation {

std::string_view to_string(line_class what) {
  switch (what) {
    case line_class::matched:
      return "matched";
    case line_class::repaired:
      return "repaired";
    case line_class::missing_here:
      return "missing_here";
    case line_class::missing_at_channel:
      return "missing_at_channel";
    case line_class::amount_mismatch:
      return "amount_mismatch";
    case line_class::status_mismatch:
      return "status_mismatch";
    case line_class::duplicate_line:
      return "duplicate_line";
    case line_class::malformed_line:
      return "malformed_line";
  }
  return "unknown";
}

verdict classify(const std::string& channel_id, const statement_line& line,
                 const std::optional<bus_payment>& bus) {
  if (!bus)
    return {line_class::missing_here, "the bus holds no order for this pay_id"};
  bool same_money = line.amount_minor == bus->amount_minor && line.currency == bus->currency;
  const auto& result = bus->result;
  if (!line.succeeded) {
    // The channel says it declined: agreed only by a payment that took no money.
    if (bus->status == payment_status::failed || bus->status == payment_status::closed)
      return same_money ? verdict{line_class::matched, ""}
                        : verdict{line_class::amount_mismatch, "amount or currency differ"};
    return {line_class::status_mismatch,
            std::string{"the line says FAILED, the bus holds the payment "}
              + to_string(bus->status)};
  }
  switch (bus->status) {
    case payment_status::failed:
    case payment_status::closed:
      return {line_class::status_mismatch,
              std::string{"the channel was paid, the bus holds the payment "}
                + to_string(bus->status) + " (a final status never changes)"};
    case payment_status::succeeded:
      if (result && result->channel_id != channel_id)
        return {line_class::status_mismatch,
                "the bus holds it SUCCEEDED through " + result->channel_id};
      if (!same_money)
        return {line_class::amount_mismatch, "amount or currency differ"};
      if (result && !result->channel_txn_id.empty()
          && result->channel_txn_id != line.channel_txn_id)
        return {line_class::status_mismatch,
                "the bus holds it SUCCEEDED as channel transaction " + result->channel_txn_id};
      return {line_class::matched, ""};
    case payment_status::processing:
      break;
  }
  if (!same_money)
    return {line_class::amount_mismatch, "amount or currency differ from the order's"};
  if (result)  // a result kept flagged (another amount): for people to settle
    return {line_class::status_mismatch, "the bus holds a flagged result through "
                                           + result->channel_id + " at "
                                           + std::to_string(result->amount_minor)};
  if (!bus->routed_channel.empty() && bus->routed_channel != channel_id)
    return {line_class::status_mismatch, "the bus routed the payment to " + bus->routed_channel};
  return {line_class::repaired, ""};
}

bus_payment as_bus_payment(const indexed_payment& payment) {
  bus_payment bus;
  bus.pay_id = payment.result.pay_id;
  bus.status = payment_status::succeeded;
  bus.amount_minor = payment.result.amount_minor;  // joined: the order's amount
  bus.currency = payment.currency;
  bus.routed_channel = payment.result.channel_id;
  bus.result = payment.result;
  return bus;
}

comparison::comparison(run_inputs inputs, bus_view& bus, line_sorter& sorter)
  : inputs_(std::move(inputs)), bus_(bus), sorter_(sorter) {
  if (!parse_utc_day(inputs_.date, day_start_ms_))
    throw std::invalid_argument("not a date (YYYY-MM-DD): " + inputs_.date);
  into_sorter_.line = [this](statement_line&& line) {
    sorter_.add(line);
    step("read", read_);
  };
  into_sorter_.malformed = [this](malformed_line&& bad) {
    finding found;
    found.what = line_class::malformed_line;
    found.why = bad.reason;
    found.line = bad.number;
    found.statement_date = inputs_.date;
    found.raw = std::move(bad);
    count(std::move(found));
  };
}

void comparison::feed(std::string_view bytes) {
  parser_.feed(bytes, into_sorter_);
}

void comparison::step(const char* phase, uint64_t& done) {
  if ((++done & 0xffff) == 0 && inputs_.progress)
    inputs_.progress(phase, done);
}

void comparison::count(finding&& found) {
  step("classed", classed_);
  ++counts_.by_class[static_cast<size_t>(found.what)];
  if (found.what != line_class::matched && inputs_.report)
    inputs_.report(found);
}

void comparison::class_line(const statement_line& line, std::optional<bus_payment> bus) {
  auto decided = classify(inputs_.channel_id, line, bus);
  if (decided.what == line_class::repaired && !inputs_.repair) {
    decided.why = "to repair (report only: nothing written)";
  } else if (decided.what == line_class::repaired) {
    payment_result result;
    result.pay_id = line.pay_id;
    result.status = payment_status::succeeded;
    result.channel_id = inputs_.channel_id;
    result.channel_txn_id = line.channel_txn_id;
    result.amount_minor = line.amount_minor;
    result.finished_at_ms = line.paid_at_ms;
    result.source = result_source::reconciliation;
    if (!bus_.repair(result)) {
      // Something else made it final, or kept the result apart, meanwhile:
      // class it again as it stands now, with no repair.
      bus = bus_.lookup(line.pay_id);
      decided = classify(inputs_.channel_id, line, bus);
      if (decided.what == line_class::repaired)
        decided = {line_class::status_mismatch, "the store kept the repair apart (a conflict)"};
    } else if (bus) {
      bus->status = payment_status::succeeded;
      bus->result = result;
    }
  }
  finding found;
  found.what = decided.what;
  found.why = std::move(decided.why);
  found.line = line.number;
  found.statement_date = inputs_.date;
  found.fields = line;
  found.bus = std::move(bus);
  count(std::move(found));
}

void comparison::unmatched(const indexed_payment& payment) {
  int64_t finished = payment.result.finished_at_ms;
  if (finished - day_start_ms_ < boundary_ms) {
    near_ends_[utc_day(day_start_ms_ - day_ms)].emplace(payment.result.pay_id, payment);
    return;
  }
  if (day_start_ms_ + day_ms - finished <= boundary_ms) {
    near_ends_[utc_day(day_start_ms_ + day_ms)].emplace(payment.result.pay_id, payment);
    return;
  }
  finding found;
  found.what = line_class::missing_at_channel;
  found.why = "SUCCEEDED here, not in the statement";
  found.bus = as_bus_payment(payment);
  count(std::move(found));
}

run_counts comparison::finish() {
  parser_.finish(into_sorter_);
  counts_.lines = parser_.data_lines();

  // Pass 2: the sorted lines beside the index, both in pay_id order.
  std::vector<indexed_payment> day;  // a window of the index, refilled as the walk goes
  bool index_done = false;
  std::string index_from;  // the index is read in slices from here
  auto cursor = day.end();
  auto refill = [&] {
    day.clear();
    if (!index_done) {
      bool more = false;
      bus_.day_payments(inputs_.channel_id, inputs_.date, index_from,
                        [&](const indexed_payment& payment) {
                          if (day.size() == 4096) {
                            more = true;
                            return false;
                          }
                          day.push_back(payment);
                          return true;
                        });
      index_done = !more;
      if (!day.empty())
        index_from = day.back().result.pay_id;
    }
    cursor = day.begin();
  };
  refill();
  auto next_index = [&]() -> const indexed_payment* {
    if (cursor == day.end())
      refill();
    return cursor == day.end() ? nullptr : &*cursor;
  };

  std::string last_pay_id;
  bool first = true;
  sorter_.sorted([&](const statement_line& line) {
    if (!first && line.pay_id == last_pay_id) {
      finding found;
      found.what = line_class::duplicate_line;
      found.why = "a pay_id seen again in this statement";
      found.line = line.number;
      found.statement_date = inputs_.date;
      found.fields = line;
      count(std::move(found));
      return true;
    }
    first = false;
    last_pay_id = line.pay_id;
    const indexed_payment* indexed = next_index();
    while (indexed != nullptr && indexed->result.pay_id < line.pay_id) {
      unmatched(*indexed);
      ++cursor;
      indexed = next_index();
    }
    if (indexed != nullptr && indexed->result.pay_id == line.pay_id) {
      class_line(line, as_bus_payment(*indexed));
      ++cursor;
    } else {
      class_line(line, bus_.lookup(line.pay_id));
    }
    return true;
  });
  for (auto indexed = next_index(); indexed != nullptr; indexed = next_index()) {
    unmatched(*indexed);
    ++cursor;
  }

  // Pass 3: the payments near an end of the day, in the adjacent statement.
  for (auto& [date, waiting] : near_ends_) {
    statement_visitor look;
    std::set<std::string> seen;
    look.line = [&](statement_line&& line) {
      auto found = waiting.find(line.pay_id);
      if (found == waiting.end() || !seen.insert(line.pay_id).second)
        return;
      auto bus = as_bus_payment(found->second);
      auto decided = classify(inputs_.channel_id, line, bus);
      finding result;
      result.what = decided.what;
      result.why = decided.why.empty() ? "" : decided.why + " (in the statement of " + date + ")";
      result.line = line.number;
      result.statement_date = date;
      result.fields = line;
      result.bus = std::move(bus);
      count(std::move(result));
    };
    look.malformed = [](malformed_line&&) {};  // that statement's own run reports them
    bool served = inputs_.adjacent && inputs_.adjacent(date, look);
    for (const auto& [pay_id, payment] : waiting) {
      if (seen.count(pay_id) > 0)
        continue;
      finding found;
      found.what = line_class::missing_at_channel;
      found.why = served
                    ? "SUCCEEDED here near midnight, in neither this statement nor " + date + "'s"
                    : "SUCCEEDED here near midnight, not in the statement (" + date
                        + "'s is not served)";
      found.bus = as_bus_payment(payment);
      count(std::move(found));
    }
  }
  near_ends_.clear();
  return counts_;
}

}  // namespace paybus::reconciliation
