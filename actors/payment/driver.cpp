#include "actors/payment/driver.hpp"

#include <algorithm>
#include <utility>

#include "common/assert.hpp"

namespace paybus {

payment_driver::payment_driver(std::vector<driver_channel> channels, size_t max_in_memory,
                               rule_timing timing, moment started, uint64_t seed,
                               driver_limits retry)
  : max_in_memory_(std::max<size_t>(2, max_in_memory)),
    timing_(timing),
    retry_(retry),
    started_ms_(started.monotonic_ms),
    rng_(seed) {
  for (auto& channel : channels)
    channels_.push_back({std::move(channel), 0});
}

payment_driver::channel_slots* payment_driver::find_channel(const std::string& id) {
  for (auto& slots : channels_)
    if (slots.channel.id == id)
      return &slots;
  return nullptr;
}

bool payment_driver::has_slot(const channel_slots& slots) {
  return slots.in_flight < slots.channel.max_in_flight;
}

bool payment_driver::expired(const payment_record& record, moment now) {
  return now.unix_ms > record.created_at_ms + record.order.expire_seconds * 1000;
}

void payment_driver::later(const std::string& pay_id, stage next, int64_t delay_ms, moment now) {
  auto found = payments_.find(pay_id);
  if (found == payments_.end())
    return;
  found->second.next = next;
  timers_.emplace(now.monotonic_ms + delay_ms, pay_id);
}

void payment_driver::release(const std::string& channel_id) {
  if (auto* slots = find_channel(channel_id); slots && slots->in_flight > 0)
    --slots->in_flight;
}

void payment_driver::record_result(const std::string& pay_id, payment_status status,
                                   const channel_outcome& outcome, result_source source, moment now,
                                   drive_actions& out) {
  auto found = payments_.find(pay_id);
  if (found == payments_.end())
    return;
  auto& payment = found->second;
  PAYBUS_ASSERT(is_final_status(status), "only a final status is written as a result");
  payment.next = stage::busy;
  payment.result_from_channel = !outcome.channel_id.empty();
  drive_action action;
  action.what = drive_action::kind::record_result;
  action.pay_id = pay_id;
  action.result.pay_id = pay_id;
  action.result.status = status;
  action.result.channel_id = payment.channel;
  action.result.channel_txn_id = outcome.channel_txn_id;
  // The channel answered for this order: its amount.
  action.result.amount_minor = payment.record.order.amount_minor;
  action.result.finished_at_ms = now.unix_ms;
  action.result.source = source;
  begin(payment, action, now);
  out.push_back(std::move(action));
}

void payment_driver::begin(driven_payment& payment, drive_action& action, moment now) {
  PAYBUS_ASSERT(payment.op == 0, "a payment has one action in flight at most");
  payment.op = ++next_op_;
  payment.op_kind = action.what;
  payment.op_channel = action.what == drive_action::kind::record_result ? "" : action.channel_id;
  action.op = payment.op;
  auto timeout = action.what == drive_action::kind::pay || action.what == drive_action::kind::query
                   ? retry_.channel_timeout_ms
                   : retry_.store_timeout_ms;
  payment.deadline = deadlines_.emplace(now.monotonic_ms + timeout,
                                        std::make_pair(payment.record.pay_id, payment.op));
}

payment_driver::driven_payment* payment_driver::take(const std::string& pay_id, uint64_t op) {
  auto found = payments_.find(pay_id);
  if (found == payments_.end() || op == 0 || found->second.op != op)
    return nullptr;
  found->second.op = 0;
  deadlines_.erase(found->second.deadline);
  return &found->second;
}

void payment_driver::apply(const std::string& pay_id, const decision& next,
                           const channel_outcome& outcome, result_source source, moment now,
                           drive_actions& out) {
  auto found = payments_.find(pay_id);
  if (found == payments_.end())
    return;
  switch (next.step) {
    case next_step::record_result:
      record_result(pay_id, next.result_status, outcome, source, now, out);
      break;
    case next_step::query_later:
      later(pay_id, stage::query, next.delay_ms, now);
      break;
    case next_step::reroute:
      found->second.excluded.insert(outcome.channel_id);
      found->second.next = stage::route;
      route_queue_.push_back(pay_id);
      break;
    case next_step::route_later:
      later(pay_id, stage::route, next.delay_ms, now);
      break;
  }
}

void payment_driver::note_held(driven_payment& payment, const channel_outcome& outcome,
                               drive_actions& out) {
  if (outcome.status != channel_status::accepted || payment.record.held
      || outcome.channel_id != payment.channel)
    return;
  // Remembered at once here, and in the store for a restart. Not awaited:
  // a crash before the write is durable loses it either way.
  payment.record.held = true;
  drive_action action;
  action.what = drive_action::kind::record_held;
  action.pay_id = payment.record.pay_id;
  action.channel_id = payment.channel;
  out.push_back(std::move(action));
}

void payment_driver::send_pay(driven_payment& payment, const std::string& channel_id, moment now,
                              drive_actions& out) {
  PAYBUS_ASSERT(payment.channel == channel_id, "a payment is sent only where it is routed");
  payment.sent_ms = now.monotonic_ms;
  drive_action action;
  action.what = drive_action::kind::pay;
  action.pay_id = payment.record.pay_id;
  action.channel_id = channel_id;
  action.record = payment.record;
  begin(payment, action, now);
  out.push_back(std::move(action));
}

void payment_driver::start_payment(driven_payment& payment, const std::string& channel_id,
                                   moment now, drive_actions& out) {
  payment.next = stage::busy;
  ++find_channel(channel_id)->in_flight;
  if (payment.channel == channel_id && payment.route_current) {
    send_pay(payment, channel_id, now, out);
    return;
  }
  // Durable before the channel hears of it: after a crash this channel is asked first.
  drive_action action;
  action.what = drive_action::kind::record_route;
  action.pay_id = payment.record.pay_id;
  action.channel_id = channel_id;
  begin(payment, action, now);
  out.push_back(std::move(action));
}

void payment_driver::pump(moment now, drive_actions& out) {
  while (!route_queue_.empty()) {
    bool any_slot = false;
    std::vector<route_candidate> candidates;
    for (const auto& slots : channels_) {
      bool usable = has_slot(slots) && slots.channel.enabled;
      candidates.push_back({slots.channel.id, slots.channel.weight, usable});
      any_slot = any_slot || usable;
    }
    if (!any_slot)
      return;  // a finishing request pumps again
    auto pay_id = route_queue_.front();
    route_queue_.pop_front();
    auto found = payments_.find(pay_id);
    if (found == payments_.end() || found->second.next != stage::route)
      continue;
    auto& payment = found->second;
    if (expired(payment.record, now)) {
      // No channel holds it (it is being routed): its time is up, so it is
      // closed, never sent, however free the channels are.
      channel_outcome none{pay_id, "", channel_status::not_found, "", "never taken"};
      record_result(pay_id, payment_status::closed, none, result_source::query, now, out);
      continue;
    }
    std::optional<std::string> chosen;
    auto* recorded = payment.channel.empty() ? nullptr : find_channel(payment.channel);
    if (recorded != nullptr && has_slot(*recorded) && recorded->channel.enabled
        && !payment.excluded.count(payment.channel)) {
      chosen = payment.channel;  // where the store already says it goes
    } else {
      double draw = std::uniform_real_distribution<double>{0, 1}(rng_);
      chosen = choose_channel(candidates, payment.record.order.channel_id, payment.excluded, draw);
    }
    if (chosen) {
      start_payment(payment, *chosen, now, out);
      continue;
    }
    // Its channels are busy, or all refused: try again shortly / after a while.
    bool refused_everywhere = !payment.excluded.empty();
    payment.excluded.clear();
    later(pay_id, stage::route, refused_everywhere ? retry_.route_retry_ms : retry_.slot_retry_ms,
          now);
  }
}

void payment_driver::steer(const std::vector<driver_channel>& channels, bool repair_paused) {
  for (const auto& steered : channels)
    if (auto* slots = find_channel(steered.id)) {
      slots->channel.weight = steered.weight;
      slots->channel.enabled = steered.enabled;
    }
  repair_paused_ = repair_paused;
}

void payment_driver::query(driven_payment& payment, moment now, drive_actions& out) {
  auto pay_id = payment.record.pay_id;
  if (repair_paused_) {
    later(pay_id, stage::query, retry_.route_retry_ms, now);
    return;
  }
  auto* slots = find_channel(payment.channel);
  if (slots == nullptr) {
    drive_action action;
    action.what = drive_action::kind::unknown_channel;
    action.pay_id = pay_id;
    action.channel_id = payment.channel;
    out.push_back(std::move(action));
    later(pay_id, stage::query, timing_.max_query_ms, now);
    return;
  }
  if (!has_slot(*slots)) {
    later(pay_id, stage::query, retry_.slot_retry_ms, now);
    return;
  }
  payment.next = stage::busy;
  ++payment.queries;
  ++slots->in_flight;
  payment.asked_ms = now.monotonic_ms;
  drive_action action;
  action.what = drive_action::kind::query;
  action.pay_id = pay_id;
  action.channel_id = payment.channel;
  begin(payment, action, now);
  out.push_back(std::move(action));
}

void payment_driver::wait_in_store(const std::string& pay_id) {
  if (!more_in_store_ || pay_id < in_store_from_)
    in_store_from_ = pay_id;
  more_in_store_ = true;
  if (loading_ && (!turned_away_while_loading_ || pay_id < *turned_away_while_loading_))
    turned_away_while_loading_ = pay_id;
}

void payment_driver::load_from_store(drive_actions& out) {
  if (!more_in_store_ || loading_ || channels_.empty() || payments_.size() > max_in_memory_ / 2)
    return;
  loading_ = true;
  drive_action action;
  action.what = drive_action::kind::read_unfinished;
  action.from = in_store_from_;
  action.limit = static_cast<uint32_t>(max_in_memory_ / 2);
  out.push_back(std::move(action));
}

void payment_driver::admit_records(std::vector<payment_record>& records, bool resumed, moment now,
                                   drive_actions& out) {
  if (channels_.empty())
    return;  // nothing to pay through: payments wait in the store
  for (auto& record : records) {
    if (is_final_status(record.status) || payments_.count(record.pay_id))
      continue;
    if (payments_.size() >= max_in_memory_) {
      // Memory is full: it waits in the store's dispatch family.
      wait_in_store(record.pay_id);
      continue;
    }
    driven_payment payment;
    payment.channel = record.routed_channel;
    payment.route_current = !resumed;
    payment.sent_ms = started_ms_;
    auto pay_id = record.pay_id;
    payment.record = std::move(record);
    auto& placed = payments_.emplace(pay_id, std::move(payment)).first->second;
    if (resumed && !placed.channel.empty()) {
      placed.next = stage::query;
      query(placed, now, out);
    } else {
      placed.next = stage::route;
      route_queue_.push_back(pay_id);
    }
  }
  pump(now, out);
}

drive_actions payment_driver::admit(std::vector<payment_record> records, bool resumed, moment now) {
  drive_actions out;
  admit_records(records, resumed, now, out);
  return out;
}

void payment_driver::settled(const std::string& pay_id) {
  auto found = payments_.find(pay_id);
  // If busy, its in-flight answer finds the payment final in the store.
  if (found != payments_.end() && found->second.next != stage::busy)
    payments_.erase(found);
  // In memory or not, a read in flight may hold it unfinished.
  if (loading_)
    finished_while_loading_.insert(pay_id);
}

drive_actions payment_driver::route_recorded(const std::string& pay_id, uint64_t op, bool recorded,
                                             moment now) {
  drive_actions out;
  auto* payment = take(pay_id, op);
  if (payment == nullptr)
    return out;
  auto channel_id = payment->op_channel;
  if (!recorded) {  // final already
    release(channel_id);
    forget(pay_id);
    pump(now, out);
    return out;
  }
  payment->route_current = true;
  payment->channel = channel_id;
  payment->record.routed_channel = channel_id;
  payment->queries = 0;
  send_pay(*payment, channel_id, now, out);
  return out;
}

drive_actions payment_driver::route_failed(const std::string& pay_id, uint64_t op, moment now) {
  drive_actions out;
  if (auto* payment = take(pay_id, op))
    fail(*payment, drive_action::kind::record_route, payment->op_channel, now, out);
  return out;
}

drive_actions payment_driver::paid(const std::string& pay_id, uint64_t op,
                                   const channel_outcome& outcome, moment now) {
  drive_actions out;
  auto* payment = take(pay_id, op);
  if (payment == nullptr)
    return out;
  release(payment->op_channel);
  note_held(*payment, outcome, out);
  apply(pay_id, after_pay(outcome, timing_), outcome, result_source::channel, now, out);
  pump(now, out);
  return out;
}

drive_actions payment_driver::queried(const std::string& pay_id, uint64_t op,
                                      const channel_outcome& outcome, moment now) {
  drive_actions out;
  auto* payment = take(pay_id, op);
  if (payment == nullptr)
    return out;
  auto channel_id = payment->op_channel;
  release(channel_id);
  // A NOT_FOUND to a question asked before the channel's settle time may
  // only mean that the pay request still waits in its queues.
  int64_t unsettled = 0;
  if (const auto* slots = find_channel(channel_id)) {
    auto settled_ms = payment->sent_ms + slots->channel.settle_ms;
    if (payment->asked_ms < settled_ms)
      unsettled = std::max<int64_t>(1, settled_ms - now.monotonic_ms);
  }
  note_held(*payment, outcome, out);
  auto next = after_query(outcome, payment->queries, expired(payment->record, now), timing_,
                          unsettled, payment->record.held);
  if (next.contradiction) {
    drive_action report;
    report.what = drive_action::kind::contradiction;
    report.pay_id = pay_id;
    report.channel_id = channel_id;
    out.push_back(std::move(report));
  }
  apply(pay_id, next, outcome, result_source::query, now, out);
  pump(now, out);
  return out;
}

drive_actions payment_driver::query_failed(const std::string& pay_id, uint64_t op, moment now) {
  drive_actions out;
  if (auto* payment = take(pay_id, op))
    fail(*payment, drive_action::kind::query, payment->op_channel, now, out);
  return out;
}

void payment_driver::result_written(const std::string& pay_id, uint64_t op) {
  if (take(pay_id, op) != nullptr)
    forget(pay_id);
}

void payment_driver::forget(const std::string& pay_id) {
  payments_.erase(pay_id);
  if (loading_)
    finished_while_loading_.insert(pay_id);
}

drive_actions payment_driver::result_failed(const std::string& pay_id, uint64_t op, moment now) {
  drive_actions out;
  if (auto* payment = take(pay_id, op))
    fail(*payment, drive_action::kind::record_result, "", now, out);
  return out;
}

void payment_driver::fail(driven_payment& payment, drive_action::kind what,
                          const std::string& channel_id, moment now, drive_actions& out) {
  auto pay_id = payment.record.pay_id;
  switch (what) {
    case drive_action::kind::record_route:
      release(channel_id);
      later(pay_id, stage::route, retry_.route_retry_ms, now);
      break;
    case drive_action::kind::pay: {
      // No answer: the channel may have taken it. Asked, never sent elsewhere.
      release(channel_id);
      channel_outcome unknown{pay_id, channel_id, channel_status::unknown, "",
                              "no answer from the channel"};
      apply(pay_id, after_pay(unknown, timing_), unknown, result_source::channel, now, out);
      pump(now, out);
      break;
    }
    case drive_action::kind::query: {
      release(channel_id);
      channel_outcome unknown{pay_id, channel_id, channel_status::unknown, "",
                              "no answer from the channel"};
      apply(pay_id, after_query(unknown, 1, false, timing_, 0, payment.record.held), unknown,
            result_source::query, now, out);
      pump(now, out);
      break;
    }
    case drive_action::kind::record_result:
      // The store cannot write: try again later. What a channel said, it
      // will say again when asked; a payment closed without one is routed
      // again, which closes it again.
      later(pay_id, payment.result_from_channel ? stage::query : stage::route,
            retry_.route_retry_ms, now);
      break;
    default:
      break;
  }
}

drive_actions payment_driver::unfinished_read(std::vector<payment_record> records, uint32_t limit,
                                              moment now) {
  drive_actions out;
  loading_ = false;
  if (records.size() < limit) {
    more_in_store_ = false;
  } else {
    in_store_from_ = records.back().pay_id;
    in_store_from_.push_back('\0');  // the next key after it
  }
  // What was turned away while this read was in flight may not be in it.
  if (turned_away_while_loading_) {
    if (!more_in_store_ || *turned_away_while_loading_ < in_store_from_)
      in_store_from_ = *turned_away_while_loading_;
    more_in_store_ = true;
    turned_away_while_loading_.reset();
  }
  // Final since the read began: its snapshot may still hold them unfinished.
  if (!finished_while_loading_.empty()) {
    records.erase(std::remove_if(records.begin(), records.end(),
                                 [&](const payment_record& record) {
                                   return finished_while_loading_.count(record.pay_id) > 0;
                                 }),
                  records.end());
    finished_while_loading_.clear();
  }
  // Some may have been sent before a stop: those with a channel are asked first.
  admit_records(records, true, now, out);
  return out;
}

void payment_driver::unfinished_failed() {
  loading_ = false;
  finished_while_loading_.clear();
  turned_away_while_loading_.reset();  // more_in_store_ says they wait already
}

drive_actions payment_driver::tick(moment now) {
  drive_actions out;
  load_from_store(out);
  while (!deadlines_.empty() && deadlines_.begin()->first <= now.monotonic_ms) {
    auto due = deadlines_.begin();
    auto [pay_id, op] = due->second;
    if (auto* payment = take(pay_id, op))  // still in flight (take erases `due`): it failed
      fail(*payment, payment->op_kind, payment->op_channel, now, out);
    else
      deadlines_.erase(due);  // cannot happen: an answered action's deadline goes with it
  }
  while (!timers_.empty() && timers_.begin()->first <= now.monotonic_ms) {
    auto pay_id = timers_.begin()->second;
    timers_.erase(timers_.begin());
    auto found = payments_.find(pay_id);
    if (found == payments_.end())
      continue;
    if (found->second.next == stage::route)
      route_queue_.push_back(pay_id);
    else if (found->second.next == stage::query)
      query(found->second, now, out);
  }
  pump(now, out);
  return out;
}

}  // namespace paybus
