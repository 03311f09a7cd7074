#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace paybus {

/// Process-wide counters and gauges, written with relaxed atomics by the
/// actors that own each figure and rendered as Prometheus text by ingress.
class metrics {
public:
  static constexpr std::array<double, 14> duration_bounds_seconds{
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0};

  // Every plain counter and gauge, declared once: its member, type, name
  // (paybus_ + member) and help text, rendered in this order.
#define PAYBUS_SCALAR_METRICS(X)                                                                   \
  X(payments_accepted_total, uint64_t, counter,                                                    \
    "Payments acknowledged with 202 after being durable locally.")                                 \
  X(payments_idempotent_total, uint64_t, counter,                                                  \
    "Repeated create requests answered with the existing payment.")                                \
  X(results_flagged_total, uint64_t, counter,                                                      \
    "Results kept but not joined because their amount differs from the order's.")                  \
  X(results_conflicting_total, uint64_t, counter,                                                  \
    "Results that contradict a payment's final result (another channel, status, "                  \
    "transaction or amount), kept in the store's conflicts family, never applied.")                \
  X(channel_contradictions_total, uint64_t, counter,                                               \
    "NOT_FOUND answers from a channel for a payment it said it holds (ACCEPTED): reported, "       \
    "not believed; the payment stays with that channel.")                                          \
  X(channel_notifications_total, uint64_t, counter,                                                \
    "Result notifications received from channels (signature valid).")                              \
  X(payments_driving, int64_t, gauge, "Payments the coordinator is routing, sending or querying.") \
  X(db_up, int64_t, gauge, "1 while the transaction database answers.")                            \
  X(db_backlog, int64_t, gauge, "Rows waiting in the local store's database outbox.")              \
  X(db_rows_written_total, uint64_t, counter,                                                      \
    "Rows the database sink has delivered (inserted or already present).")                         \
  X(db_rows_refused_total, uint64_t, counter,                                                      \
    "Rows the database refused for their content (a data exception or an integrity "               \
    "constraint): each is logged as an error, stays in the database outbox and is sent "           \
    "again at the next start, while the rows after it go on.")                                     \
  X(db_rows_conflicting_total, uint64_t, counter,                                                  \
    "Rows not written because the database holds another row under the same pay_id or "            \
    "(merchant, merchant_order_no): each is logged as an error and kept apart in the local "       \
    "store (paybus-replay show).")                                                                 \
  X(db_delivery_rounds_total, uint64_t, counter,                                                   \
    "Times the database sink has looked at its outbox.")                                           \
  X(notify_backlog, int64_t, gauge, "Merchant notifications waiting for delivery.")                \
  X(store_up, int64_t, gauge, "1 while the local store accepts writes.")                           \
  X(store_batches_total, uint64_t, counter,                                                        \
    "Synced write batches (group commits) of the local store.")                                    \
  X(store_batched_writes_total, uint64_t, counter, "Write requests carried by those batches.")     \
  X(store_write_errors_total, uint64_t, counter, "Failed local store writes.")                     \
  X(http_connections, int64_t, gauge, "Open client connections.")                                  \
  X(http_inflight, int64_t, gauge, "Requests waiting on the order or store actors.")

#define PAYBUS_DECLARE_METRIC(member, type, kind, help) std::atomic<type> member{0};
  PAYBUS_SCALAR_METRICS(PAYBUS_DECLARE_METRIC)
#undef PAYBUS_DECLARE_METRIC

  // Merchant webhook attempts by what came of them
  // (paybus_webhook_attempts_total{result}).
  std::atomic<uint64_t> webhooks_delivered_total{0};   // a 2xx
  std::atomic<uint64_t> webhooks_retried_total{0};     // anything else: tried again later
  std::atomic<uint64_t> webhooks_given_up_total{0};    // failing past notify.give_up_after_ms
  std::atomic<uint64_t> webhooks_untargeted_total{0};  // no URL to send to: waits, looked at later
  std::atomic<uint64_t> webhooks_unreadable_total{0};  // its payment could not be read: read again

  // Payments that reached a final status, by it
  // (paybus_payment_results_total{status}).
  std::atomic<uint64_t> results_succeeded_total{0};
  std::atomic<uint64_t> results_failed_total{0};
  std::atomic<uint64_t> results_closed_total{0};

  metrics() {
    store_up.store(1);  // writable until a write says otherwise
  }

  /// Records a channel's circuit state: 0 closed, 1 open, 2 half-open,
  /// 3 held open by the operator.
  void set_breaker_state(const std::string& channel, int state);
  /// Requests outstanding at a channel now.
  void set_channel_in_flight(const std::string& channel, int64_t count);
  /// The operator's switches: a channel's weight and whether it takes new
  /// payments; whether a kind of non-core work is paused.
  void set_channel_switch(const std::string& channel, int64_t weight, bool enabled);
  void set_degraded(const std::string& which, bool paused);
  /// paybus_cluster_peer_up{instance}: 1 while that peer is connected.
  void set_cluster_peer_up(int32_t instance, bool up);
  /// paybus_cluster_slot_epoch and paybus_cluster_slots_owned: the slot
  /// table this instance routes creates by.
  void set_cluster_slots(int64_t epoch, int64_t owned);

  /// A channel's figures since start, for the admin console.
  struct channel_figures {
    int breaker_state = 0;
    int64_t in_flight = 0;
    std::map<std::string, uint64_t> requests;  // by outcome
  };
  channel_figures channel(const std::string& channel) const;

  /// Records the time from an order's creation to its result joining it.
  void observe_join_latency(int64_t latency_ms);

  /// Counts a request to a channel by its outcome.
  void count_channel_request(const std::string& channel, const std::string& outcome);

  /// A reconciliation run of `channel` finished: its statement's data lines,
  /// the count of each class but matched (by name), and when it finished.
  void count_reconciliation(const std::string& channel, uint64_t lines,
                            const std::map<std::string, uint64_t>& differences,
                            int64_t finished_unix_ms);

  /// Counts one answered HTTP request.
  void count_response(int status_code, int64_t duration_us);

  /// The whole registry in Prometheus text exposition format 0.0.4.
  std::string render_prometheus() const;

private:
  std::array<std::atomic<uint64_t>, 600> responses_by_code_{};
  std::array<std::atomic<uint64_t>, duration_bounds_seconds.size() + 1> duration_buckets_{};
  std::atomic<uint64_t> duration_count_{0};
  std::atomic<uint64_t> duration_sum_us_{0};
  mutable std::mutex channel_mutex_;
  std::map<std::pair<std::string, std::string>, uint64_t> channel_requests_;
  std::map<std::string, int> breaker_states_;
  std::map<std::string, int64_t> channel_in_flight_;
  std::map<std::string, std::pair<int64_t, bool>> channel_switches_;  // weight, enabled
  std::map<std::string, bool> degraded_;
  std::map<int32_t, bool> cluster_peers_;
  std::optional<std::pair<int64_t, int64_t>> cluster_slots_;
  std::map<std::string, uint64_t> reconciliation_lines_;  // by channel
  std::map<std::pair<std::string, std::string>, uint64_t> reconciliation_differences_;
  std::map<std::string, int64_t> reconciliation_success_ms_;  // by channel
  std::array<std::atomic<uint64_t>, duration_bounds_seconds.size() + 1> join_buckets_{};
  std::atomic<uint64_t> join_count_{0};
  std::atomic<uint64_t> join_sum_ms_{0};
};

}  // namespace paybus
