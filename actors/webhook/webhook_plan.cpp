#include "actors/webhook/webhook_plan.hpp"

#include <algorithm>
#include <utility>

namespace paybus {

int64_t webhook_retry_delay(int64_t attempt, int64_t base_ms, int64_t max_ms) {
  int64_t delay = base_ms;
  for (int64_t i = 0; i < attempt && delay < max_ms; ++i)
    delay *= 2;
  return std::min(delay, max_ms);
}

attempt_plan plan_after_attempt(int32_t http_status, int64_t attempt, int64_t first_due_ms,
                                int64_t now_ms, const webhook_retry_policy& policy) {
  if (http_status >= 200 && http_status < 300)
    return {attempt_outcome::delivered, 0};
  if (now_ms - first_due_ms > policy.give_up_after_ms)
    return {attempt_outcome::given_up, 0};
  return {attempt_outcome::retried,
          now_ms + webhook_retry_delay(attempt, policy.base_ms, policy.max_ms)};
}

size_t webhook_room(size_t busy, size_t per_merchant, size_t idle_slots) {
  return busy + std::min(busy < per_merchant ? per_merchant - busy : 0, idle_slots);
}

std::vector<size_t> plan_starts(const std::vector<std::string>& due_merchants,
                                const std::vector<bool>& skip,
                                const std::map<std::string, size_t>& busy, size_t per_merchant,
                                size_t capacity, size_t in_flight) {
  // Each entry's level: its merchant's deliveries in flight, then one more
  // for each entry of that merchant before it. Lower levels start first.
  std::vector<std::pair<size_t, size_t>> order;  // level, entry
  std::map<std::string, size_t> level;
  for (size_t i = 0; i < due_merchants.size(); ++i) {
    if (skip[i])
      continue;
    const auto& merchant = due_merchants[i];
    auto [at, fresh] = level.emplace(merchant, 0);
    if (auto found = busy.find(merchant); fresh && found != busy.end())
      at->second = found->second;
    order.emplace_back(at->second++, i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<size_t> starts;
  auto started = busy;
  for (const auto& [_, i] : order) {
    if (in_flight + starts.size() >= capacity)
      break;  // every slot busy: a finished delivery starts the next round
    auto& count = started[due_merchants[i]];
    if (count >= per_merchant)
      continue;  // stays due: a later round takes it
    ++count;
    starts.push_back(i);
  }
  return starts;
}

}  // namespace paybus
