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

/// The UTC day of a moment, "YYYY-MM-DD".
std::string utc_day(int64_t unix_ms);

/// Parses a UTC day "YYYY-MM-DD" (from 1970 on) into the unix ms of its
/// midnight; false if malformed or not a date.
bool parse_utc_day(const std::string& day, int64_t& start_ms);

constexpr int64_t day_ms = 86'400'000;

}  // namespace paybus
