#include "common/pay_id.hpp"

namespace paybus {

namespace {

/// Writes `value` as exactly `width` decimal digits ending before `end`.
void put_digits(char* end, size_t width, int64_t value) {
  for (size_t i = 0; i < width; ++i) {
    *--end = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

}  // namespace

std::string format_pay_id(const pay_id_parts& parts) {
  // Issued once a payment on the ingress thread: digits by hand, not printf.
  std::string text(pay_id_length, '0');
  char* end = text.data() + pay_id_length;
  put_digits(end, 4, parts.counter);
  put_digits(end - 4, 2, parts.shard);
  put_digits(end - 6, 5, parts.instance_id);
  put_digits(end - 11, 13, parts.unix_ms);
  return text;
}

std::optional<pay_id_parts> parse_pay_id(std::string_view text) {
  if (text.size() != pay_id_length)
    return std::nullopt;
  for (char c : text)
    if (c < '0' || c > '9')
      return std::nullopt;
  auto number = [&](size_t offset, size_t length) {
    int64_t value = 0;
    for (size_t i = offset; i < offset + length; ++i)
      value = value * 10 + (text[i] - '0');
    return value;
  };
  pay_id_parts parts;
  parts.unix_ms = number(0, 13);
  parts.instance_id = static_cast<int32_t>(number(13, 5));
  parts.shard = static_cast<int32_t>(number(18, 2));
  parts.counter = static_cast<int32_t>(number(20, 4));
  return parts;
}

pay_id_generator::pay_id_generator(int32_t instance_id, int32_t shard, int64_t floor_ms)
  : instance_id_(instance_id),
    shard_(shard),
    step_ms_(floor_ms),
    // The floor step counts as used up: the first id lands in a later step.
    counter_(counter_per_step) {
}

std::string pay_id_generator::next(int64_t now_ms) {
  if (now_ms > step_ms_) {
    step_ms_ = now_ms;
    counter_ = 0;
  } else if (counter_ + 1 < counter_per_step) {
    ++counter_;
  } else {
    ++step_ms_;
    counter_ = 0;
  }
  return format_pay_id({step_ms_, instance_id_, shard_, counter_});
}

}  // namespace paybus
