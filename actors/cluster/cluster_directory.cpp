#include "actors/cluster/cluster_directory.hpp"

namespace paybus {

cluster_directory::cluster_directory(int32_t self) : self_{self} {}

bool cluster_directory::serves(int32_t instance) const {
  return instance == self_;
}

cluster_actor cluster_directory::owner(int32_t instance) const {
  std::lock_guard<std::mutex> guard{mutex_};
  auto found = peers_.find(instance);
  return found == peers_.end() ? cluster_actor{} : found->second.handle;
}

void cluster_directory::peer_up(int32_t instance, const std::string& address,
                                cluster_actor handle) {
  std::lock_guard<std::mutex> guard{mutex_};
  peers_[instance] = peer{address, std::move(handle)};
}

void cluster_directory::peer_down(int32_t instance) {
  std::lock_guard<std::mutex> guard{mutex_};
  if (auto found = peers_.find(instance); found != peers_.end())
    found->second.handle = cluster_actor{};
}

std::vector<cluster_directory::member> cluster_directory::members() const {
  std::lock_guard<std::mutex> guard{mutex_};
  std::vector<member> out;
  for (const auto& [instance, known] : peers_)
    out.push_back({instance, known.address, static_cast<bool>(known.handle)});
  return out;
}

} // namespace paybus
