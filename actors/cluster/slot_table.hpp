#pragma once

// The slot table (API.md section 9): who may create the payment of a
// (merchant, merchant_order_no). Every key hashes to one of slot_count
// slots and each slot has one owner instance, so that the same order sent to
// two instances is decided by one store, once. The table lives in
// PostgreSQL (paybus_slots) and every instance caches it (in memory and in
// its local store), so that it keeps serving while the database is down.
// It changes only by an operator's action, and each change raises its
// epoch: a table with a higher epoch replaces a lower one, never the reverse.

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace paybus {

constexpr int32_t slot_count = 4096;

/// The slot of an order: FNV-1a (64 bits) of merchant, a zero byte and
/// order number, modulo slot_count. Fixed forever: every instance of every
/// version must agree.
int32_t slot_of(std::string_view merchant_id, std::string_view merchant_order_no);

struct slot_table {
  int64_t epoch = 0;
  std::vector<int32_t> owners;  // slot_count entries, or none while unknown

  bool known() const {
    return owners.size() == static_cast<size_t>(slot_count);
  }
  int32_t owner(int32_t slot) const {
    return owners[static_cast<size_t>(slot)];
  }
  /// How many slots each instance owns.
  std::map<int32_t, int32_t> counts() const;
};

/// {"epoch":N,"owners":[[instance,first,last],...]}: runs of slots.
std::string encode_slots(const slot_table& table);
/// The table, or nothing (and `error`) if `text` is not a whole table.
std::optional<slot_table> decode_slots(std::string_view text, std::string& error);

/// The table as this process knows it: one writer (the cluster actor),
/// read by the ingress for each create (a version check, then a copy only
/// when it changed). Thread-safe.
class shared_slots {
public:
  /// Takes `table` if it is whole and newer (a higher epoch) than the one
  /// held, or none is held; returns whether it did.
  bool offer(slot_table table);
  slot_table get() const;
  uint64_t version() const {
    return version_.load(std::memory_order_acquire);
  }

  /// Whether the table held was read from the database, or matched by a
  /// peer, since this process started. One from the local store alone may
  /// be behind (an instance adopted while it was down): this instance
  /// decides no order by it until then.
  bool confirmed() const {
    return confirmed_.load(std::memory_order_acquire);
  }
  void confirm() {
    confirmed_.store(true, std::memory_order_release);
  }

private:
  mutable std::mutex mutex_;
  slot_table table_;
  std::atomic<uint64_t> version_{0};
  std::atomic<bool> confirmed_{false};
};

}  // namespace paybus

namespace paybus {

/// The table from paybus_slots rows ("SLOT INSTANCE EPOCH"); its epoch is
/// the highest of the rows'. Nothing (and `error`) unless every slot is
/// there once.
std::optional<slot_table> slots_from_rows(const std::vector<std::string>& rows, std::string& error);

}  // namespace paybus
