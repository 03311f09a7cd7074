#pragma once

// One shard of order creation: issues pay_ids from its own counter space
// (shards never contend) and routes each order by weight, or to the channel
// it names. Plain code run by the ingress as it queues a create, so that an
// order goes from the ingress to the store writer in one hop.

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "actors/payment/payment_rules.hpp"
#include "common/live_switches.hpp"
#include "common/pay_id.hpp"
#include "messages/interfaces.hpp"

namespace paybus {

struct order_shard_settings {
  int32_t instance_id = 0;
  int32_t shard = 0;
  int64_t pay_id_floor_ms = 0;
  // Channels and weights: each order is routed here, in its acceptance batch
  // (the coordinator may still move it if that channel is busy or refuses).
  std::vector<std::pair<std::string, int64_t>> channels;
  // The operator's weights and enabled channels, taken over the ones above
  // whenever they change (null: the configured weights, all enabled).
  const live_switches* switches = nullptr;
};

class order_shard {
public:
  explicit order_shard(const order_shard_settings& settings);

  /// The record to create for `order` at `now_ms`: a new pay_id of this
  /// shard's space, the instance, the creation time and the chosen route.
  payment_record issue(payment_order order, int64_t now_ms);

private:
  int32_t instance_id_;
  pay_id_generator generator_;
  std::vector<route_candidate> candidates_;
  switch_view switches_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace paybus
