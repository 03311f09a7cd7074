#include <string>
#include <unordered_map>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/response_promise.hpp>
#include <caf/typed_event_based_actor.hpp>

#include "actors/admission.hpp"
#include "actors/spawn.hpp"
#include "common/clock.hpp"
#include "common/pay_id.hpp"
#include "storage/local_store.hpp"

namespace paybus {

namespace {

struct waiting_request {
  payment_order order;
  caf::typed_response_promise<order_admitted> promise;
};

struct order_shard_state {
  store_actor store;
  order_shard_settings settings;
  std::unique_ptr<pay_id_generator> generator;
  // Creates in flight to the store, by idempotency key. Concurrent duplicates
  // wait here for the first one's durable answer instead of racing it.
  std::unordered_map<std::string, std::vector<waiting_request>> in_flight;
};

using shard_pointer = order_actor::stateful_pointer<order_shard_state>;

void settle(shard_pointer self, const std::string& key,
            const order_stored& stored) {
  auto& st = self->state;
  auto waiting = st.in_flight.find(key);
  if (waiting == st.in_flight.end())
    return;
  bool first = true;
  for (auto& request : waiting->second) {
    order_admitted answer;
    answer.record = stored.record;
    answer.disposition = static_cast<uint8_t>(
      decide_admission(stored.created && first, stored.record.order, request.order));
    request.promise.deliver(std::move(answer));
    first = false;
  }
  st.in_flight.erase(waiting);
}

void fail(shard_pointer self, const std::string& key, const caf::error& error) {
  auto& st = self->state;
  auto waiting = st.in_flight.find(key);
  if (waiting == st.in_flight.end())
    return;
  for (auto& request : waiting->second)
    request.promise.deliver(error);
  st.in_flight.erase(waiting);
}

order_actor::behavior_type order_shard_behavior(shard_pointer self,
                                                store_actor store,
                                                order_shard_settings settings) {
  auto& st = self->state;
  st.store = std::move(store);
  st.settings = settings;
  st.generator = std::make_unique<pay_id_generator>(
    settings.instance_id, settings.shard, settings.pay_id_floor_ms);
  return {
    [=](payment_order& order) -> caf::result<order_admitted> {
      auto& st = self->state;
      auto key = idempotency_key(order.merchant_id, order.merchant_order_no);
      auto promise = self->make_response_promise<order_admitted>();
      auto& waiting = st.in_flight[key];
      bool first = waiting.empty();
      waiting.push_back(waiting_request{order, promise});
      if (!first)
        return promise;
      payment_record record;
      auto now = unix_now_ms();
      record.pay_id = st.generator->next(now);
      record.order = std::move(order);
      record.instance_id = st.settings.instance_id;
      record.created_at_ms = now;
      // No timeout: the store answers every create, with an error if it
      // cannot write; the ingress bounds how long a client waits.
      self->request(st.store, caf::infinite, create_atom::value,
                    std::move(record))
        .then([=](order_stored& stored) { settle(self, key, stored); },
              [=](caf::error& error) { fail(self, key, error); });
      return promise;
    },
  };
}

} // namespace

order_actor spawn_order_shard(caf::actor_system& system, store_actor store,
                              order_shard_settings settings) {
  return system.spawn(order_shard_behavior, std::move(store), settings);
}

} // namespace paybus
