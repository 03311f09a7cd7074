#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

namespace paybus {

/// Process-wide counters and gauges, written with relaxed atomics by the
/// actors that own each figure and rendered as Prometheus text by ingress.
class metrics {
public:
  static constexpr std::array<double, 14> duration_bounds_seconds{
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05,
    0.1,    0.2,   0.5,   1.0,   2.0,  5.0,  10.0};

  std::atomic<uint64_t> payments_accepted_total{0};
  std::atomic<uint64_t> payments_idempotent_total{0};
  std::atomic<uint64_t> store_batches_total{0};
  std::atomic<uint64_t> store_batched_writes_total{0};
  std::atomic<uint64_t> store_write_errors_total{0};
  std::atomic<int64_t> store_up{1};
  std::atomic<int64_t> db_up{0};
  std::atomic<int64_t> db_backlog{0};
  std::atomic<uint64_t> db_rows_written_total{0};
  std::atomic<uint64_t> db_rows_refused_total{0};
  std::atomic<uint64_t> db_delivery_rounds_total{0};
  std::atomic<int64_t> notify_backlog{0};
  // Merchant webhook attempts by what came of them.
  std::atomic<uint64_t> webhooks_delivered_total{0};  // a 2xx
  std::atomic<uint64_t> webhooks_retried_total{0};    // anything else: tried again later
  std::atomic<uint64_t> webhooks_given_up_total{0};   // failing past notify.give_up_after_ms
  std::atomic<uint64_t> webhooks_untargeted_total{0}; // no URL to send to: dropped
  std::atomic<int64_t> http_connections{0};
  std::atomic<int64_t> http_inflight{0};
  std::atomic<uint64_t> results_flagged_total{0};
  std::atomic<uint64_t> results_conflicting_total{0};
  std::atomic<uint64_t> notifications_received_total{0};
  std::atomic<int64_t> payments_driving{0};

  /// Counts a payment that reached a final status.
  void count_result(const std::string& status);

  /// Records a channel's circuit state: 0 closed, 1 open, 2 half-open.
  void set_breaker_state(const std::string& channel, int state);

  /// Records the time from an order's creation to its result joining it.
  void observe_join_latency(int64_t latency_ms);

  /// Counts a request to a channel by its outcome.
  void count_channel_request(const std::string& channel, const std::string& outcome);

  /// Counts one answered HTTP request.
  void count_response(int status_code, int64_t duration_us);

  /// The whole registry in Prometheus text exposition format 0.0.4.
  std::string render_prometheus() const;

private:
  std::array<std::atomic<uint64_t>, 600> responses_by_code_{};
  std::array<std::atomic<uint64_t>, duration_bounds_seconds.size() + 1>
    duration_buckets_{};
  std::atomic<uint64_t> duration_count_{0};
  std::atomic<uint64_t> duration_sum_us_{0};
  std::atomic<uint64_t> results_succeeded_{0};
  std::atomic<uint64_t> results_failed_{0};
  std::atomic<uint64_t> results_closed_{0};
  mutable std::mutex channel_mutex_;
  std::map<std::pair<std::string, std::string>, uint64_t> channel_requests_;
  std::map<std::string, int> breaker_states_;
  std::array<std::atomic<uint64_t>, duration_bounds_seconds.size() + 1> join_buckets_{};
  std::atomic<uint64_t> join_count_{0};
  std::atomic<uint64_t> join_sum_ms_{0};
};

} // namespace paybus
