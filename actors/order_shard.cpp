#include <memory>
#include <random>

#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/payment_rules.hpp"
#include "actors/spawn.hpp"
#include "common/clock.hpp"
#include "common/pay_id.hpp"

namespace paybus {

namespace {

struct order_shard_state {
  store_actor store;
  order_shard_settings settings;
  std::unique_ptr<pay_id_generator> generator;
  std::vector<route_candidate> candidates;
  std::mt19937_64 rng{std::random_device{}()};
};

using shard_pointer = order_actor::stateful_pointer<order_shard_state>;

order_actor::behavior_type order_shard_behavior(shard_pointer self,
                                                store_actor store,
                                                order_shard_settings settings) {
  auto& st = self->state;
  st.store = std::move(store);
  st.settings = settings;
  st.generator = std::make_unique<pay_id_generator>(
    settings.instance_id, settings.shard, settings.pay_id_floor_ms);
  for (const auto& [id, weight] : settings.channels)
    st.candidates.push_back({id, weight, true});
  return {
    [=](std::vector<payment_order>& orders) {
      auto& st = self->state;
      std::vector<payment_record> records;
      records.reserve(orders.size());
      auto now = unix_now_ms();
      for (auto& order : orders) {
        payment_record record;
        record.pay_id = st.generator->next(now);
        record.order = std::move(order);
        record.instance_id = st.settings.instance_id;
        record.created_at_ms = now;
        double draw = std::uniform_real_distribution<double>{0, 1}(st.rng);
        if (auto chosen = choose_channel(st.candidates, record.order.channel_id, {}, draw))
          record.routed_channel = *chosen;
        records.push_back(std::move(record));
      }
      // The store decides idempotency (it is the single writer, so concurrent
      // duplicates are serialized there) and answers the requester directly.
      return self->delegate(st.store, create_atom::value, std::move(records));
    },
  };
}

} // namespace

order_actor spawn_order_shard(caf::actor_system& system, store_actor store,
                              order_shard_settings settings) {
  return system.spawn(order_shard_behavior, std::move(store), settings);
}

} // namespace paybus
