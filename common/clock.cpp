#include "common/clock.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <string_view>

namespace paybus {

int64_t unix_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

int64_t monotonic_now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
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
  std::snprintf(text, sizeof(text), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  return text;
}

bool parse_rfc3339_ms(const std::string& text, int64_t& unix_ms) {
  // Fixed width, a digit wherever 'd' is: no signs, no spaces, no short fields.
  static constexpr std::string_view whole_seconds = "dddd-dd-ddTdd:dd:ddZ";
  static constexpr std::string_view with_millis = "dddd-dd-ddTdd:dd:dd.dddZ";
  std::string_view form = text.size() == whole_seconds.size() ? whole_seconds
                          : text.size() == with_millis.size() ? with_millis
                                                              : std::string_view{};
  if (form.empty())
    return false;
  for (size_t i = 0; i < form.size(); ++i) {
    bool digit = text[i] >= '0' && text[i] <= '9';
    if (form[i] == 'd' ? !digit : text[i] != form[i])
      return false;
  }
  auto number = [&](size_t at, size_t width) {
    int value = 0;
    for (size_t i = at; i < at + width; ++i)
      value = value * 10 + (text[i] - '0');
    return value;
  };
  struct tm utc {};
  utc.tm_year = number(0, 4) - 1900;
  utc.tm_mon = number(5, 2) - 1;
  utc.tm_mday = number(8, 2);
  utc.tm_hour = number(11, 2);
  utc.tm_min = number(14, 2);
  utc.tm_sec = number(17, 2);
  int millis = form.size() == with_millis.size() ? number(20, 3) : 0;
  // From 1970: PostgreSQL refuses year 0, and no payment is older.
  if (utc.tm_year < 70 || utc.tm_hour > 23 || utc.tm_min > 59 || utc.tm_sec > 59)
    return false;
  struct tm given = utc;
  time_t seconds = timegm(&utc);
  // timegm carries a day past its month's end into the next (February 30 is
  // March 2) and month 0 into the year before: refuse a date that moved.
  if (utc.tm_year != given.tm_year || utc.tm_mon != given.tm_mon || utc.tm_mday != given.tm_mday)
    return false;
  unix_ms = static_cast<int64_t>(seconds) * 1000 + millis;
  return true;
}

std::string utc_day(int64_t unix_ms) {
  return format_rfc3339_ms(unix_ms).substr(0, 10);
}

bool parse_utc_day(const std::string& day, int64_t& start_ms) {
  return day.size() == 10 && parse_rfc3339_ms(day + "T00:00:00Z", start_ms);
}

}  // namespace paybus
