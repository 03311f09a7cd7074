#include "actors/payment/order_shard.hpp"

namespace paybus {

order_shard::order_shard(const order_shard_settings& settings)
  : instance_id_(settings.instance_id),
    generator_(settings.instance_id, settings.shard, settings.pay_id_floor_ms),
    switches_(settings.switches) {
  for (const auto& [id, weight] : settings.channels)
    candidates_.push_back({id, weight, true});
}

payment_record order_shard::issue(payment_order order, int64_t now_ms) {
  payment_record record;
  record.pay_id = generator_.next(now_ms);
  record.order = std::move(order);
  record.instance_id = instance_id_;
  record.created_at_ms = now_ms;
  if (switches_.refresh()) {
    // A disabled channel gets no new payments, not even one that names it.
    candidates_.clear();
    for (const auto& channel : switches_.state().channels)
      candidates_.push_back(
        {channel.id, channel.weight, channel.enabled && !channel.breaker_forced});
  }
  double draw = std::uniform_real_distribution<double>{0, 1}(rng_);
  if (auto chosen = choose_channel(candidates_, record.order.channel_id, {}, draw))
    record.routed_channel = *chosen;
  return record;
}

}  // namespace paybus
