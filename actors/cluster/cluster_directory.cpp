#include "actors/cluster/cluster_directory.hpp"

#include "common/pay_id.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

cluster_directory::cluster_directory(int32_t self) : self_{self} {
}

bool cluster_directory::serves(int32_t instance) const {
  if (instance == self_)
    return true;
  std::lock_guard<std::mutex> guard{mutex_};
  return adopted_.count(instance) > 0;
}

std::optional<adopted_store> cluster_directory::adopted(int32_t instance) const {
  std::lock_guard<std::mutex> guard{mutex_};
  auto found = adopted_.find(instance);
  if (found == adopted_.end())
    return std::nullopt;
  return found->second;
}

std::optional<adopted_store> cluster_directory::adopted_for(const std::string& pay_id) const {
  auto parts = parse_pay_id(pay_id);
  if (!parts || parts->instance_id == self_)
    return std::nullopt;
  return adopted(parts->instance_id);
}

std::vector<adopted_store> cluster_directory::adopted_all() const {
  std::lock_guard<std::mutex> guard{mutex_};
  std::vector<adopted_store> out;
  for (const auto& [instance, store] : adopted_)
    out.push_back(store);
  return out;
}

void cluster_directory::adopt(adopted_store store) {
  std::lock_guard<std::mutex> guard{mutex_};
  peers_.erase(store.instance);
  adopted_[store.instance] = std::move(store);
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

std::optional<payment_record> cluster_directory::find_adopted(const std::string& merchant_id,
                                                              const std::string& merchant_order_no,
                                                              bool& failed) const {
  failed = false;
  for (const auto& store : adopted_all()) {
    std::optional<payment_record> found;
    if (!store.store->find(merchant_id, merchant_order_no, found).ok()) {
      failed = true;
      return std::nullopt;
    }
    if (found)
      return found;
  }
  return std::nullopt;
}

}  // namespace paybus
