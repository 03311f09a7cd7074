#include "common/metrics.hpp"

#include <cstdio>

#include "common/crypto.hpp"

namespace paybus {

namespace {

void append_metric(std::string& out, const char* name, const char* type, const char* help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

void append_value(std::string& out, const std::string& series, double value) {
  char number[64];
  std::snprintf(number, sizeof(number), "%.17g", value);
  out += series;
  out += ' ';
  out += number;
  out += '\n';
}

/// A histogram's buckets, sum and count over `duration_bounds_seconds`.
template <class Buckets, class Counter>
void append_histogram(std::string& out, const std::string& name, const Buckets& buckets,
                      double sum_seconds, const Counter& count) {
  uint64_t cumulative = 0;
  for (size_t i = 0; i < metrics::duration_bounds_seconds.size(); ++i) {
    cumulative += buckets[i].load(std::memory_order_relaxed);
    char bound[32];
    std::snprintf(bound, sizeof(bound), "%g", metrics::duration_bounds_seconds[i]);
    append_value(out, name + "_bucket{le=\"" + bound + "\"}", static_cast<double>(cumulative));
  }
  cumulative += buckets.back().load(std::memory_order_relaxed);
  append_value(out, name + "_bucket{le=\"+Inf\"}", static_cast<double>(cumulative));
  append_value(out, name + "_sum", sum_seconds);
  append_value(out, name + "_count", static_cast<double>(count.load(std::memory_order_relaxed)));
}

}  // namespace

void metrics::count_response(int status_code, int64_t duration_us) {
  if (status_code >= 100 && status_code < 600)
    responses_by_code_[status_code].fetch_add(1, std::memory_order_relaxed);
  double seconds = static_cast<double>(duration_us) / 1e6;
  size_t bucket = 0;
  while (bucket < duration_bounds_seconds.size() && seconds > duration_bounds_seconds[bucket])
    ++bucket;
  duration_buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  duration_count_.fetch_add(1, std::memory_order_relaxed);
  duration_sum_us_.fetch_add(static_cast<uint64_t>(duration_us < 0 ? 0 : duration_us),
                             std::memory_order_relaxed);
}

void metrics::set_breaker_state(const std::string& channel, int state) {
  std::lock_guard<std::mutex> guard{channel_mutex_};
  breaker_states_[channel] = state;
}

void metrics::set_channel_in_flight(const std::string& channel, int64_t count) {
  std::lock_guard<std::mutex> guard{channel_mutex_};
  channel_in_flight_[channel] = count;
}

void metrics::set_channel_switch(const std::string& channel, int64_t weight, bool enabled) {
  std::lock_guard<std::mutex> guard{channel_mutex_};
  channel_switches_[channel] = {weight, enabled};
}

void metrics::set_cluster_peer_up(int32_t instance, bool up) {
  std::lock_guard<std::mutex> guard{channel_mutex_};
  cluster_peers_[instance] = up;
}

void metrics::set_cluster_slots(int64_t epoch, int64_t owned) {
  std::lock_guard<std::mutex> guard{channel_mutex_};
  cluster_slots_ = std::pair{epoch, owned};
}

void metrics::set_degraded(const std::string& which, bool paused) {
  std::lock_guard<std::mutex> guard{channel_mutex_};
  degraded_[which] = paused;
}

metrics::channel_figures metrics::channel(const std::string& channel) const {
  std::lock_guard<std::mutex> guard{channel_mutex_};
  channel_figures figures;
  if (auto found = breaker_states_.find(channel); found != breaker_states_.end())
    figures.breaker_state = found->second;
  if (auto found = channel_in_flight_.find(channel); found != channel_in_flight_.end())
    figures.in_flight = found->second;
  for (auto at = channel_requests_.lower_bound({channel, ""});
       at != channel_requests_.end() && at->first.first == channel; ++at)
    figures.requests[at->first.second] = at->second;
  return figures;
}

void metrics::observe_join_latency(int64_t latency_ms) {
  double seconds = static_cast<double>(latency_ms < 0 ? 0 : latency_ms) / 1000.0;
  size_t bucket = 0;
  while (bucket < duration_bounds_seconds.size() && seconds > duration_bounds_seconds[bucket])
    ++bucket;
  join_buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  join_count_.fetch_add(1, std::memory_order_relaxed);
  join_sum_ms_.fetch_add(static_cast<uint64_t>(latency_ms < 0 ? 0 : latency_ms),
                         std::memory_order_relaxed);
}

void metrics::count_channel_request(const std::string& channel, const std::string& outcome) {
  std::lock_guard<std::mutex> guard{channel_mutex_};
  ++channel_requests_[{channel, outcome}];
}

void metrics::count_reconciliation(const std::string& channel, uint64_t lines,
                                   const std::map<std::string, uint64_t>& differences,
                                   int64_t finished_unix_ms) {
  std::lock_guard lock{channel_mutex_};
  reconciliation_lines_[channel] += lines;
  for (const auto& [what, count] : differences)
    reconciliation_differences_[{channel, what}] += count;
  reconciliation_success_ms_[channel] = finished_unix_ms;
}

std::string metrics::render_prometheus() const {
  std::string out;
  out.reserve(8192);
  auto load = [](const auto& x) { return static_cast<double>(x.load(std::memory_order_relaxed)); };

#define PAYBUS_RENDER_METRIC(member, type, kind, help)                                             \
  append_metric(out, "paybus_" #member, #kind, help);                                              \
  append_value(out, "paybus_" #member, load(member));
  PAYBUS_SCALAR_METRICS(PAYBUS_RENDER_METRIC)
#undef PAYBUS_RENDER_METRIC

  append_metric(out, "paybus_payment_results_total", "counter",
                "Final payment results joined, by status.");
  append_value(out, "paybus_payment_results_total{status=\"SUCCEEDED\"}",
               load(results_succeeded_total));
  append_value(out, "paybus_payment_results_total{status=\"FAILED\"}", load(results_failed_total));
  append_value(out, "paybus_payment_results_total{status=\"CLOSED\"}", load(results_closed_total));

  append_metric(out, "paybus_http_requests_total", "counter",
                "HTTP requests answered, by status code.");
  for (int code = 100; code < 600; ++code) {
    auto count = responses_by_code_[code].load(std::memory_order_relaxed);
    if (count > 0)
      append_value(out, "paybus_http_requests_total{code=\"" + std::to_string(code) + "\"}",
                   static_cast<double>(count));
  }

  append_metric(out, "paybus_request_duration_seconds", "histogram",
                "Time from a request's last byte to its response being queued.");
  append_histogram(out, "paybus_request_duration_seconds", duration_buckets_,
                   load(duration_sum_us_) / 1e6, duration_count_);

  append_metric(out, "paybus_join_latency_seconds", "histogram",
                "Time from an order's creation to its final result joining it.");
  append_histogram(out, "paybus_join_latency_seconds", join_buckets_, load(join_sum_ms_) / 1000.0,
                   join_count_);

  append_metric(
    out, "paybus_webhook_attempts_total", "counter",
    "Merchant webhook attempts by result: delivered (a 2xx), retried (anything "
    "else, tried again later), given_up (still failing after "
    "notify.give_up_after_ms: logged and dropped), untargeted (no URL to send to: dropped).");
  append_value(out, "paybus_webhook_attempts_total{result=\"delivered\"}",
               load(webhooks_delivered_total));
  append_value(out, "paybus_webhook_attempts_total{result=\"retried\"}",
               load(webhooks_retried_total));
  append_value(out, "paybus_webhook_attempts_total{result=\"given_up\"}",
               load(webhooks_given_up_total));
  append_value(out, "paybus_webhook_attempts_total{result=\"untargeted\"}",
               load(webhooks_untargeted_total));
  append_value(out, "paybus_webhook_attempts_total{result=\"unreadable\"}",
               load(webhooks_unreadable_total));
  {
    std::lock_guard<std::mutex> guard{channel_mutex_};
    append_metric(out, "paybus_channel_requests_total", "counter",
                  "Requests sent to payment channels, by channel and outcome.");
    for (const auto& [key, count] : channel_requests_)
      append_value(out,
                   "paybus_channel_requests_total{channel=\"" + key.first + "\",outcome=\""
                     + key.second + "\"}",
                   static_cast<double>(count));
    append_metric(out, "paybus_channel_breaker_state", "gauge",
                  "Circuit breaker per channel: 0 closed, 1 open, 2 half-open, 3 held open by "
                  "the operator.");
    for (const auto& [channel, state] : breaker_states_)
      append_value(out, "paybus_channel_breaker_state{channel=\"" + channel + "\"}", state);
    append_metric(out, "paybus_channel_in_flight", "gauge",
                  "Requests outstanding at each channel.");
    for (const auto& [channel, count] : channel_in_flight_)
      append_value(out, "paybus_channel_in_flight{channel=\"" + channel + "\"}",
                   static_cast<double>(count));
    append_metric(out, "paybus_channel_weight", "gauge",
                  "Routing weight of each channel (the configuration's, or the operator's).");
    for (const auto& [channel, switched] : channel_switches_)
      append_value(out, "paybus_channel_weight{channel=\"" + channel + "\"}",
                   static_cast<double>(switched.first));
    append_metric(out, "paybus_channel_enabled", "gauge",
                  "1 while a channel takes new payments, 0 once the operator disabled it.");
    for (const auto& [channel, switched] : channel_switches_)
      append_value(out, "paybus_channel_enabled{channel=\"" + channel + "\"}",
                   switched.second ? 1 : 0);
    append_metric(out, "paybus_degraded", "gauge",
                  "1 while the operator has paused that non-core work (webhooks, db_feed, "
                  "order_repair, reconciliation).");
    for (const auto& [which, paused] : degraded_)
      append_value(out, "paybus_degraded{switch=\"" + which + "\"}", paused ? 1 : 0);
    append_metric(out, "paybus_cluster_peer_up", "gauge",
                  "1 while the peer instance is connected, 0 once it is lost.");
    for (const auto& [instance, up] : cluster_peers_)
      append_value(out, "paybus_cluster_peer_up{instance=\"" + std::to_string(instance) + "\"}",
                   up ? 1 : 0);
    if (cluster_slots_) {
      append_metric(out, "paybus_cluster_slot_epoch", "gauge",
                    "Epoch of the slot table this instance routes creates by.");
      append_value(out, "paybus_cluster_slot_epoch", static_cast<double>(cluster_slots_->first));
      append_metric(out, "paybus_cluster_slots_owned", "gauge",
                    "Slots of the table whose orders this instance decides.");
      append_value(out, "paybus_cluster_slots_owned", static_cast<double>(cluster_slots_->second));
    }
    append_metric(out, "paybus_reconciliation_lines_total", "counter",
                  "Statement lines read by reconciliation runs that finished, by channel.");
    for (const auto& [channel, count] : reconciliation_lines_)
      append_value(out, "paybus_reconciliation_lines_total{channel=\"" + channel + "\"}",
                   static_cast<double>(count));
    append_metric(out, "paybus_reconciliation_differences_total", "counter",
                  "Lines and payments of finished reconciliation runs in each class but "
                  "matched, by channel and class.");
    for (const auto& [key, count] : reconciliation_differences_)
      append_value(out,
                   "paybus_reconciliation_differences_total{channel=\"" + key.first + "\",class=\""
                     + key.second + "\"}",
                   static_cast<double>(count));
    append_metric(out, "paybus_reconciliation_last_success_timestamp_seconds", "gauge",
                  "When the last reconciliation run of each channel finished (unix seconds).");
    for (const auto& [channel, at] : reconciliation_success_ms_)
      append_value(
        out, "paybus_reconciliation_last_success_timestamp_seconds{channel=\"" + channel + "\"}",
        static_cast<double>(at) / 1000.0);
  }

  auto usage = crypto::private_key_usage_so_far();
  append_metric(
    out, "paybus_private_key_operations_total", "counter",
    "RSA private-key operations (signed channel requests and RSA merchants' webhooks) made by this process.");
  append_value(out, "paybus_private_key_operations_total", static_cast<double>(usage.operations));
  append_metric(out, "paybus_private_key_cpu_seconds_total", "counter",
                "CPU time spent inside those operations.");
  append_value(out, "paybus_private_key_cpu_seconds_total",
               static_cast<double>(usage.cpu_ns) / 1e9);
  return out;
}

}  // namespace paybus
