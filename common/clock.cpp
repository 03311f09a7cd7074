#include "common/clock.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>

namespace paybus {

int64_t unix_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch())
    .count();
}

int64_t monotonic_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch())
    .count();
}

std::string format_rfc3339_ms(int64_t unix_ms) {
  time_t seconds = static_cast<time_t>(unix_ms / 1000);
  int millis = static_cast<int>(unix_ms % 1000);
  if (millis < 0) {
    millis += 1000;
    seconds -= 1;
  }
  struct tm utc {};
  gmtime_r(&seconds, &utc);
  char text[96];  // room for any int in each field, as the compiler counts
  std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                utc.tm_min, utc.tm_sec, millis);
  return text;
}

bool parse_rfc3339_ms(const std::string& text, int64_t& unix_ms) {
  struct tm utc {};
  int millis = 0;
  char zone = 0;
  int consumed = 0;
  if (text.size() == 24) {
    if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c%n", &utc.tm_year, &utc.tm_mon,
                    &utc.tm_mday, &utc.tm_hour, &utc.tm_min, &utc.tm_sec, &millis, &zone,
                    &consumed) != 8)
      return false;
  } else if (text.size() == 20) {
    if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%c%n", &utc.tm_year, &utc.tm_mon,
                    &utc.tm_mday, &utc.tm_hour, &utc.tm_min, &utc.tm_sec, &zone, &consumed) != 7)
      return false;
  } else {
    return false;
  }
  if (zone != 'Z' || static_cast<size_t>(consumed) != text.size() || utc.tm_mon < 1
      || utc.tm_mon > 12 || utc.tm_mday < 1 || utc.tm_mday > 31 || utc.tm_hour > 23
      || utc.tm_min > 59 || utc.tm_sec > 60)
    return false;
  utc.tm_year -= 1900;
  utc.tm_mon -= 1;
  unix_ms = static_cast<int64_t>(timegm(&utc)) * 1000 + millis;
  return true;
}

} // namespace paybus
