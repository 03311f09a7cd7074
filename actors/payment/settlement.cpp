#include "actors/payment/settlement.hpp"

#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "actors/payment/payment_rules.hpp"
#include "common/assert.hpp"

namespace paybus {

namespace {

/// The payments as the batch has left them so far: what it wrote, else
/// what the store held.
class working_state {
public:
  explicit working_state(const store_snapshot& held) : held_(held) {
  }

  std::optional<payment_record> order(const std::string& pay_id) const {
    if (const auto* found = find_order(pay_id))
      return *found;
    return std::nullopt;
  }

  /// The same without a copy, valid until the next put.
  const payment_record* find_order(const std::string& pay_id) const {
    if (auto hit = orders_.find(pay_id); hit != orders_.end())
      return &hit->second;
    if (auto hit = held_.orders.find(pay_id); hit != held_.orders.end())
      return &hit->second;
    return nullptr;
  }

  bool has_result(const std::string& pay_id) const {
    if (dropped_results_.count(pay_id) > 0)
      return false;
    return results_.count(pay_id) > 0 || held_.results.count(pay_id) > 0;
  }

  std::optional<payment_result> result(const std::string& pay_id) const {
    if (dropped_results_.count(pay_id) > 0)
      return std::nullopt;
    if (auto hit = results_.find(pay_id); hit != results_.end())
      return hit->second;
    if (auto hit = held_.results.find(pay_id); hit != held_.results.end())
      return hit->second;
    return std::nullopt;
  }

  void put_order(const payment_record& record) {
    orders_[record.pay_id] = record;
  }

  void put_result(const payment_result& result) {
    dropped_results_.erase(result.pay_id);
    results_[result.pay_id] = result;
  }

  /// A result waiting for its order that is kept apart instead.
  void drop_result(const std::string& pay_id) {
    results_.erase(pay_id);
    dropped_results_.insert(pay_id);
  }

  void set_dispatch(const std::string& pay_id, bool driven) {
    dispatch_[pay_id] = driven;
  }

  /// The writes, each key once with its last value (moved out: the state is
  /// done with).
  void write_to(store_changes& changes) {
    changes.orders.reserve(orders_.size());
    for (auto& [pay_id, record] : orders_)
      changes.orders.push_back(std::move(record));
    for (auto& [pay_id, result] : results_)
      changes.results.push_back(std::move(result));
    for (const auto& pay_id : dropped_results_)
      changes.results_removed.push_back(pay_id);
    // An order created in this batch has no dispatch entry in the store to
    // delete (the store counts its entries by these lists).
    for (const auto& [pay_id, driven] : dispatch_)
      if (driven)
        changes.dispatch_added.push_back(pay_id);
      else if (held_.orders.count(pay_id) > 0)
        changes.dispatch_removed.push_back(pay_id);
  }

private:
  const store_snapshot& held_;
  std::map<std::string, payment_record> orders_;
  std::map<std::string, payment_result> results_;
  std::set<std::string> dropped_results_;
  std::map<std::string, bool> dispatch_;  // true: put, false: deleted
};

/// A final result joins its order: the payment takes its status.
void join(payment_record& order, const payment_result& result) {
  PAYBUS_ASSERT(!is_final_status(order.status), "a final status never changes");
  PAYBUS_ASSERT(is_final_status(result.status), "only a final result joins an order");
  PAYBUS_ASSERT(!result.flagged, "a flagged result never joins");
  order.status = result.status;
  order.channel_txn_id = result.channel_txn_id;
  order.finished_at_ms = result.finished_at_ms;
}

class settler {
public:
  settler(const store_batch& batch, const store_snapshot& held, const settlement_policy& policy,
          int64_t now_ms)
    : batch_(batch), held_(held), policy_(policy), now_ms_(now_ms), state_(held) {
    auto& answers = out_.answers;
    answers.creates.assign(batch.creates.size(), order_stored{});
    answers.routes.assign(batch.routes.size(), false);
    answers.results.assign(batch.results.size(), result_recorded{});
  }

  settlement run() {
    for (size_t i = 0; i < batch_.creates.size(); ++i)
      create(i);
    for (size_t i = 0; i < batch_.routes.size(); ++i)
      route(i);
    for (size_t i = 0; i < batch_.results.size(); ++i)
      result(i);
    for (const auto& update : batch_.webhook_updates)
      webhook_update_(update);
    out_.changes.outbox_removed = batch_.delivered;
    out_.changes.database_conflicts = batch_.database_conflicts;
    out_.changes.nonces = batch_.nonces;
    state_.write_to(out_.changes);
    std::map<std::string, int64_t> earliest;
    auto note = [&](const webhook_entry& hook) {
      auto [at, fresh] = earliest.emplace(hook.merchant_id, hook.due_ms);
      if (!fresh && hook.due_ms < at->second)
        at->second = hook.due_ms;
    };
    for (const auto& hook : out_.changes.webhooks)
      note(hook);
    for (const auto& move : out_.changes.webhook_moves)
      if (move.to)
        note(*move.to);
    for (const auto& [merchant_id, due_ms] : earliest)
      out_.answers.webhooks_queued.push_back({merchant_id, due_ms});
    out_.answers.outbox_grew = !out_.changes.outbox.empty();
    return std::move(out_);
  }

private:
  void outbox(char kind, const std::string& pay_id) {
    PAYBUS_ASSERT(state_.find_order(pay_id) != nullptr, "an outbox entry has its order");
    out_.changes.outbox.push_back({0, kind, pay_id});
  }

  /// A payment joined its result: a SUCCEEDED one is indexed by channel and
  /// day (once: a payment joins once).
  void index_success(const payment_record& record, const payment_result& result) {
    if (result.status == payment_status::succeeded)
      out_.changes.succeeded.emplace_back(record.order.currency, result);
  }

  void webhook(const payment_record& record) {
    if (!wants_webhook(policy_, record))
      return;
    webhook_entry entry;
    entry.merchant_id = record.order.merchant_id;
    entry.event_id = "evt_" + record.pay_id;  // one final event per payment: stable
    entry.pay_id = record.pay_id;
    entry.first_due_ms = now_ms_;
    entry.due_ms = now_ms_;
    out_.changes.webhooks.push_back(std::move(entry));
  }

  void webhook_update_(const webhook_update& update) {
    webhook_entry entry;
    entry.merchant_id = update.merchant_id;
    entry.event_id = update.event_id;
    entry.pay_id = update.pay_id;
    entry.attempt = update.attempt;
    entry.first_due_ms = update.first_due_ms;
    entry.due_ms = update.due_ms;
    webhook_move move{entry, std::nullopt};
    if (update.next_due_ms != 0) {
      if (update.attempted)
        entry.attempt += 1;
      entry.due_ms = update.next_due_ms;
      move.to = std::move(entry);
    }
    out_.changes.webhook_moves.push_back(std::move(move));
  }

  void create(size_t i) {
    auto record = batch_.creates[i];
    auto& answer = out_.answers.creates[i];
    auto key = idempotency_key(record.order.merchant_id, record.order.merchant_order_no);
    if (auto hit = decided_.find(key); hit != decided_.end()) {
      answer.created = false;
      answer.record = out_.answers.creates[hit->second].record;
      answer.outcome = decide_admission(false, answer.record.order, record.order);
      return;
    }
    if (auto held = held_.pay_ids.find(key); held != held_.pay_ids.end()) {
      const auto* existing = state_.find_order(held->second);
      PAYBUS_ASSERT(existing != nullptr, "an idempotency entry has its order");
      answer.created = false;
      answer.record = *existing;
      answer.outcome = decide_admission(false, answer.record.order, record.order);
      decided_.emplace(std::move(key), i);
      return;
    }
    // A result that arrived before its order joins now, if it comes from
    // the channel the order is routed to. From any other (or with no
    // channel chosen yet), it speaks for a payment no channel was asked
    // about (pay_ids are predictable): kept apart, never applied.
    std::optional<payment_result> early;
    if (state_.has_result(record.pay_id))
      early = state_.result(record.pay_id);
    if (early && early->channel_id != record.routed_channel) {
      keep_conflict(result_conflict::against::route, routed_result(record), *early);
      state_.drop_result(record.pay_id);
      early.reset();
    }
    bool joins = early && !early->flagged && early->amount_minor == record.order.amount_minor;
    if (joins)
      join(record, *early);
    if (early && !early->flagged && !joins) {  // paid at another amount: never SUCCEEDED silently
      early->flagged = true;
      state_.put_result(*early);
      ++out_.answers.flagged;
    }
    state_.put_order(record);
    out_.changes.idempotency.emplace_back(key, record.pay_id);
    outbox('O', record.pay_id);
    if (joins) {
      outbox('R', record.pay_id);
      index_success(record, *early);
      webhook(record);
    } else {
      state_.set_dispatch(record.pay_id, true);
    }
    answer.created = true;
    answer.outcome = admission::created;
    answer.record = std::move(record);
    decided_.emplace(std::move(key), i);
  }

  void route(size_t i) {
    const auto& route = batch_.routes[i];
    auto order = state_.order(route.pay_id);
    if (!order || is_final_status(order->status))
      return;
    // A payment whose result is flagged goes nowhere else: which amount its
    // channel took is for people to settle.
    if (auto kept = state_.result(route.pay_id); kept && kept->flagged)
      return;
    if (route.held) {
      // Its channel said it holds it: remembered, so that a NOT_FOUND from
      // that channel, before or after a restart, is a contradiction.
      if (order->routed_channel != route.channel_id)
        return;
      order->held = true;
      state_.put_order(*order);
      out_.answers.routes[i] = true;
      return;
    }
    PAYBUS_ASSERT(!order->held || order->routed_channel == route.channel_id,
                  "a payment its channel holds is never routed elsewhere");
    order->routed_channel = route.channel_id;
    state_.put_order(*order);
    out_.answers.routes[i] = true;
  }

  /// What the store holds of a payment's route, as the result a result from
  /// another channel contradicts.
  static payment_result routed_result(const payment_record& order) {
    payment_result routed;
    routed.pay_id = order.pay_id;
    routed.status = order.status;
    routed.channel_id = order.routed_channel;
    routed.amount_minor = order.order.amount_minor;
    return routed;
  }

  /// Keeps `late` apart, never applied, once however often it comes.
  void keep_conflict(result_conflict::against what, const payment_result& kept,
                     const payment_result& late) {
    auto key = conflict_key(late);
    if (held_.conflicts.count(key) > 0 || !conflicts_this_batch_.insert(key).second)
      return;
    out_.changes.conflicts.push_back(late);
    out_.answers.conflicts.push_back({what, kept, late});
  }

  void result(size_t i) {
    auto result = batch_.results[i];
    auto& answer = out_.answers.results[i];
    auto known = state_.result(result.pay_id);
    auto order = state_.order(result.pay_id);
    // A duplicate, or too late: the payment is final, or its result was kept
    // flagged (another amount than the order's), which only people settle.
    bool settled = order && is_final_status(order->status);
    if (settled || (order && known && known->flagged)) {
      answer.changed = false;
      answer.joined = settled;
      answer.result = known ? *known : result;
      // Never applied (a final status never changes), never lost either.
      if (known && contradicts(*known, result))
        keep_conflict(settled ? result_conflict::against::final_result
                              : result_conflict::against::flagged_result,
                      *known, result);
      return;
    }
    if (order && !order->routed_channel.empty() && result.channel_id != order->routed_channel) {
      // A channel the payment is not routed to cannot speak for it, unless it
      // took the payment late after saying it had not: either way people
      // must look, and the payment goes on where it is routed.
      answer.changed = false;
      answer.result = result;
      keep_conflict(result_conflict::against::route, routed_result(*order), result);
      return;
    }
    if (known && !known->flagged && !order) {  // already waiting for its order
      answer.result = *known;
      // Another answer for it meanwhile: kept apart, as after a final result.
      if (contradicts(*known, result))
        keep_conflict(result_conflict::against::waiting_result, *known, result);
      return;
    }
    if (order && order->order.amount_minor != result.amount_minor) {
      result.flagged = true;
      ++out_.answers.flagged;
    }
    state_.put_result(result);
    answer.changed = true;
    answer.result = result;
    if (order && !result.flagged) {
      join(*order, result);
      state_.put_order(*order);
      outbox('R', result.pay_id);
      index_success(*order, result);
      webhook(*order);
      state_.set_dispatch(result.pay_id, false);
      answer.joined = true;
      out_.answers.join_latencies_ms.push_back(now_ms_ - order->created_at_ms);
    }
  }

  const store_batch& batch_;
  const store_snapshot& held_;
  const settlement_policy& policy_;
  int64_t now_ms_;
  working_state state_;
  settlement out_;
  std::unordered_map<std::string, size_t> decided_;  // idempotency key -> create index
  std::unordered_set<std::string> conflicts_this_batch_;
};

}  // namespace

snapshot_keys keys_to_read(const store_batch& batch) {
  snapshot_keys keys;
  for (const auto& create : batch.creates) {
    keys.idempotency_keys.push_back(
      idempotency_key(create.order.merchant_id, create.order.merchant_order_no));
    keys.result_ids.push_back(create.pay_id);
  }
  for (const auto& route : batch.routes) {
    keys.order_ids.push_back(route.pay_id);
    keys.result_ids.push_back(route.pay_id);
  }
  for (const auto& result : batch.results) {
    keys.order_ids.push_back(result.pay_id);
    keys.result_ids.push_back(result.pay_id);
    keys.conflict_keys.push_back(conflict_key(result));
  }
  return keys;
}

settlement settle(const store_batch& batch, const store_snapshot& held,
                  const settlement_policy& policy, int64_t now_ms) {
  return settler{batch, held, policy, now_ms}.run();
}

admission decide_admission(bool created_now, const payment_order& stored,
                           const payment_order& requested) {
  if (created_now)
    return admission::created;
  return same_body(stored, requested) ? admission::existing : admission::conflict;
}

bool wants_webhook(const settlement_policy& policy, const payment_record& record) {
  return !record.order.notify_url.empty() || !policy.default_webhook_merchants
         || policy.default_webhook_merchants->count(record.order.merchant_id) > 0;
}

bool contradicts(const payment_result& kept, const payment_result& late) {
  return late.status != kept.status || late.channel_id != kept.channel_id
         || late.amount_minor != kept.amount_minor
         || (!late.channel_txn_id.empty() && !kept.channel_txn_id.empty()
             && late.channel_txn_id != kept.channel_txn_id);
}

}  // namespace paybus
