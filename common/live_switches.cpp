#include "common/live_switches.hpp"

#include <stdexcept>

#include <nlohmann/json.hpp>

namespace paybus {

const char* to_string(degrade_switch which) {
  switch (which) {
    case degrade_switch::webhooks:
      return "webhooks";
    case degrade_switch::db_feed:
      return "db_feed";
    case degrade_switch::order_repair:
      return "order_repair";
    case degrade_switch::reconciliation:
      return "reconciliation";
  }
  return "unknown";
}

std::optional<degrade_switch> parse_degrade_switch(std::string_view name) {
  for (auto which : all_degrade_switches)
    if (name == to_string(which))
      return which;
  return std::nullopt;
}

channel_switch* switch_state::find(std::string_view channel_id) {
  for (auto& channel : channels)
    if (channel.id == channel_id)
      return &channel;
  return nullptr;
}

const channel_switch* switch_state::find(std::string_view channel_id) const {
  return const_cast<switch_state*>(this)->find(channel_id);
}

std::string encode_switches(const switch_state& state) {
  nlohmann::json channels = nlohmann::json::object();
  for (const auto& channel : state.channels)
    if (channel.changed)
      channels[channel.id] = {{"weight", channel.weight},
                              {"enabled", channel.enabled},
                              {"breaker_forced", channel.breaker_forced}};
  nlohmann::json paused = nlohmann::json::object();
  for (auto which : all_degrade_switches)
    paused[to_string(which)] = state.is_paused(which);
  return nlohmann::json{
    {"version", 1}, {"channels", channels}, {"paused", paused}, {"log_level", state.log_level}}
    .dump();
}

bool overlay_switches(std::string_view stored, switch_state& state,
                      std::vector<std::string>& dropped, std::string& error) {
  auto json = nlohmann::json::parse(stored, nullptr, false);
  if (!json.is_object() || !json.contains("channels") || !json["channels"].is_object()
      || !json.contains("paused") || !json["paused"].is_object()) {
    error = "the admin switches kept in the store are not the expected JSON object";
    return false;
  }
  auto next = state;
  try {
    for (const auto& [id, fields] : json["channels"].items()) {
      auto* channel = next.find(id);
      if (channel == nullptr) {
        dropped.push_back(id);
        continue;
      }
      channel->weight = fields.at("weight").get<int64_t>();
      if (channel->weight < 0 || channel->weight > 10'000)
        throw std::out_of_range{"weight of " + id + " out of 0..10000"};
      channel->enabled = fields.at("enabled").get<bool>();
      channel->breaker_forced = fields.at("breaker_forced").get<bool>();
      channel->changed = true;
    }
    for (auto which : all_degrade_switches)
      if (auto found = json["paused"].find(to_string(which)); found != json["paused"].end())
        next.paused[static_cast<size_t>(which)] = found->get<bool>();
    next.log_level = json.value("log_level", std::string{});
  } catch (const std::exception& problem) {
    error = std::string{"the admin switches kept in the store cannot be read: "} + problem.what();
    return false;
  }
  state = std::move(next);
  return true;
}

live_switches::live_switches(switch_state initial) {
  replace(std::move(initial));
}

switch_state live_switches::snapshot() const {
  std::lock_guard<std::mutex> guard{mutex_};
  return state_;
}

void live_switches::replace(switch_state next) {
  std::lock_guard<std::mutex> guard{mutex_};
  for (auto which : all_degrade_switches)
    paused_[static_cast<size_t>(which)].store(next.is_paused(which), std::memory_order_relaxed);
  state_ = std::move(next);
  version_.fetch_add(1, std::memory_order_release);
}

}  // namespace paybus
