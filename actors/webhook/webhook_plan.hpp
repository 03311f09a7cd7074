#pragma once

// The webhook delivery plan as pure functions: the retry schedule.

#include <cstdint>

namespace paybus {

/// Delay before retry number `attempt + 1` of a webhook: doubling from
/// `base_ms`, capped at `max_ms`.
int64_t webhook_retry_delay(int64_t attempt, int64_t base_ms, int64_t max_ms);

} // namespace paybus
