#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace paybus {

/// Layout of a pay_id: 24 decimal digits, fixed width so that byte order is
/// numeric order.
///
///   TTTTTTTTTTTTT IIIII SS CCCC
///   unix ms (13)  instance (5)  shard (2)  counter within the ms (4)
///
/// Unique across instances (the instance number comes from the registry),
/// shards (each shard owns its own counter space, so shards never contend),
/// and restarts (a generator never issues in a time step at or before the
/// last step of any id the store already holds, nor in the step it started in).
struct pay_id_parts {
  int64_t unix_ms = 0;
  int32_t instance_id = 0;
  int32_t shard = 0;
  int32_t counter = 0;
};

constexpr size_t pay_id_length = 24;
constexpr int32_t max_instance_id = 99999;
constexpr int32_t max_shards = 100;
constexpr int32_t counter_per_step = 10000;

std::string format_pay_id(const pay_id_parts& parts);
std::optional<pay_id_parts> parse_pay_id(std::string_view text);

/// Issues increasing pay_ids for one shard of one instance. Not thread-safe:
/// each shard owns one.
class pay_id_generator {
public:
  /// `floor_ms` is the last time step that must never be reused: the
  /// greater of the newest id's step in the store and the start time.
  pay_id_generator(int32_t instance_id, int32_t shard, int64_t floor_ms);

  /// Next id for wall-clock time `now_ms`. If the clock stands still or goes
  /// back, ids keep increasing by borrowing the next step.
  std::string next(int64_t now_ms);

private:
  int32_t instance_id_;
  int32_t shard_;
  int64_t step_ms_;
  int32_t counter_;
};

}  // namespace paybus
