#include "actors/cluster/slot_table.hpp"

#include <algorithm>
#include <cstdio>

#include <nlohmann/json.hpp>

namespace paybus {

int32_t slot_of(std::string_view merchant_id, std::string_view merchant_order_no) {
  uint64_t hash = 14695981039346656037ull;
  auto mix = [&hash](unsigned char byte) {
    hash ^= byte;
    hash *= 1099511628211ull;
  };
  for (char c : merchant_id)
    mix(static_cast<unsigned char>(c));
  mix(0);
  for (char c : merchant_order_no)
    mix(static_cast<unsigned char>(c));
  return static_cast<int32_t>(hash % static_cast<uint64_t>(slot_count));
}

std::map<int32_t, int32_t> slot_table::counts() const {
  std::map<int32_t, int32_t> out;
  for (auto owner : owners)
    ++out[owner];
  return out;
}

std::string encode_slots(const slot_table& table) {
  nlohmann::json runs = nlohmann::json::array();
  for (size_t first = 0; first < table.owners.size();) {
    size_t last = first;
    while (last + 1 < table.owners.size() && table.owners[last + 1] == table.owners[first])
      ++last;
    runs.push_back({table.owners[first], first, last});
    first = last + 1;
  }
  return nlohmann::json{{"epoch", table.epoch}, {"owners", runs}}.dump();
}

std::optional<slot_table> decode_slots(std::string_view text, std::string& error) {
  auto document = nlohmann::json::parse(text, nullptr, false);
  if (!document.is_object() || !document.contains("epoch") || !document["epoch"].is_number_integer()
      || !document.contains("owners") || !document["owners"].is_array()) {
    error = "a slot table is {\"epoch\": N, \"owners\": [[instance, first, last], ...]}";
    return std::nullopt;
  }
  slot_table table;
  table.epoch = document["epoch"].get<int64_t>();
  table.owners.assign(static_cast<size_t>(slot_count), 0);
  std::vector<bool> seen(static_cast<size_t>(slot_count), false);
  for (const auto& run : document["owners"]) {
    if (!run.is_array() || run.size() != 3 || !run[0].is_number_integer()
        || !run[1].is_number_integer() || !run[2].is_number_integer()) {
      error = "a run of slots is [instance, first, last]";
      return std::nullopt;
    }
    auto owner = run[0].get<int64_t>();
    auto first = run[1].get<int64_t>();
    auto last = run[2].get<int64_t>();
    if (owner < 1 || owner > 99999 || first < 0 || last < first || last >= slot_count) {
      error = "a run of slots names no instance or leaves 0.." + std::to_string(slot_count - 1);
      return std::nullopt;
    }
    for (auto slot = first; slot <= last; ++slot) {
      if (seen[static_cast<size_t>(slot)]) {
        error = "slot " + std::to_string(slot) + " is owned twice";
        return std::nullopt;
      }
      seen[static_cast<size_t>(slot)] = true;
      table.owners[static_cast<size_t>(slot)] = static_cast<int32_t>(owner);
    }
  }
  for (int32_t slot = 0; slot < slot_count; ++slot)
    if (!seen[static_cast<size_t>(slot)]) {
      error = "slot " + std::to_string(slot) + " has no owner";
      return std::nullopt;
    }
  return table;
}

bool shared_slots::offer(slot_table table) {
  if (!table.known())
    return false;
  std::lock_guard<std::mutex> guard{mutex_};
  if (table_.known() && table.epoch <= table_.epoch)
    return false;
  table_ = std::move(table);
  version_.fetch_add(1, std::memory_order_release);
  return true;
}

slot_table shared_slots::get() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return table_;
}

}  // namespace paybus

namespace paybus {

std::optional<slot_table> slots_from_rows(const std::vector<std::string>& rows,
                                          std::string& error) {
  slot_table table;
  table.owners.assign(static_cast<size_t>(slot_count), 0);
  std::vector<bool> seen(static_cast<size_t>(slot_count), false);
  for (const auto& row : rows) {
    long long slot = -1, owner = 0, epoch = 0;
    if (std::sscanf(row.c_str(), "%lld %lld %lld", &slot, &owner, &epoch) != 3 || slot < 0
        || slot >= slot_count || owner < 1 || owner > 99999 || epoch < 1
        || seen[static_cast<size_t>(slot)]) {
      error = "paybus_slots holds a row that is not one slot's: '" + row + "'";
      return std::nullopt;
    }
    seen[static_cast<size_t>(slot)] = true;
    table.owners[static_cast<size_t>(slot)] = static_cast<int32_t>(owner);
    table.epoch = std::max<int64_t>(table.epoch, epoch);
  }
  for (int32_t slot = 0; slot < slot_count; ++slot)
    if (!seen[static_cast<size_t>(slot)]) {
      error = "paybus_slots has no row for slot " + std::to_string(slot);
      return std::nullopt;
    }
  return table;
}

}  // namespace paybus
