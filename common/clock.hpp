#pragma once

#include <cstdint>
#include <string>

namespace paybus {

/// Milliseconds since the unix epoch, from the system (wall) clock.
int64_t unix_now_ms();

/// Milliseconds from a monotonic clock, for timeouts and durations.
int64_t monotonic_now_ms();

/// RFC 3339 UTC with milliseconds, e.g. "2026-11-22T03:30:00.123Z".
std::string format_rfc3339_ms(int64_t unix_ms);

/// Parses "YYYY-MM-DDTHH:MM:SS[.mmm]Z" from 1970 on; false if malformed or
/// not a date (a day past its month's end, a leap second).
bool parse_rfc3339_ms(const std::string& text, int64_t& unix_ms);

} // namespace paybus
