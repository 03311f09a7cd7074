#include "actors/webhook/webhook_plan.hpp"

#include <algorithm>

namespace paybus {

int64_t webhook_retry_delay(int64_t attempt, int64_t base_ms, int64_t max_ms) {
  int64_t delay = base_ms;
  for (int64_t i = 0; i < attempt && delay < max_ms; ++i)
    delay *= 2;
  return std::min(delay, max_ms);
}

} // namespace paybus
