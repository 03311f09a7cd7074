// The order shard with CAF's deterministic test coordinator: pay_ids from the
// shard's own space, the store's answer delegated to the caller, errors too.

#include <memory>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/scheduler/test_coordinator.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <catch2/catch.hpp>

#include "actors/admission.hpp"
#include "actors/spawn.hpp"

using namespace paybus;

namespace {

struct store_double_state {
  std::vector<payment_record> creates;
};

store_actor::behavior_type store_double(store_actor::stateful_pointer<store_double_state> self,
                                        std::shared_ptr<std::vector<payment_record>> creates,
                                        bool failing) {
  return {
    [=](create_atom, std::vector<payment_record>& records)
      -> caf::result<std::vector<order_stored>> {
      for (const auto& record : records)
        creates->push_back(record);
      if (failing)
        return caf::make_error(errc::store_unavailable);
      std::vector<order_stored> results;
      for (const auto& record : records)
        results.push_back(order_stored{true, record});
      return results;
    },
    [=](result_atom, payment_result&) -> caf::result<result_recorded> {
      return result_recorded{};
    },
    [=](route_atom, payment_routed&) { return false; },
    [=](std::vector<nonce_accepted>&) {},
    [=](flush_atom) {},
    [=](nonce_flush_atom) {},
    [=](tick_atom) {},
  };
}

caf::behavior client(caf::event_based_actor* self, order_actor shard,
                     std::vector<payment_order> orders,
                     std::shared_ptr<std::vector<std::string>> answers) {
  auto count = orders.size();
  self->request(shard, caf::infinite, std::move(orders))
    .then(
      [=](std::vector<order_stored>& results) {
        CHECK(results.size() == count);
        for (const auto& stored : results)
          answers->push_back(std::string{stored.created ? "created" : "existing"} + ":"
                             + stored.record.pay_id);
        self->quit();
      },
      [=](caf::error&) {
        answers->push_back("error");
        self->quit();
      });
  return {[](int) {}};
}

struct fixture {
  fixture() : system(configure(config)),
              coordinator(dynamic_cast<caf::scheduler::test_coordinator&>(system.scheduler())) {
  }

  static caf::actor_system_config& configure(caf::actor_system_config& cfg) {
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.add_message_types<caf::id_block::paybus>();
    return cfg;
  }

  std::vector<payment_order> order(const std::string& no, int64_t amount) {
    return {one(no, amount)};
  }

  payment_order one(const std::string& no, int64_t amount) {
    payment_order o;
    o.merchant_id = "demo";
    o.merchant_order_no = no;
    o.amount_minor = amount;
    o.currency = "CNY";
    return o;
  }

  caf::actor_system_config config;
  caf::actor_system system;
  caf::scheduler::test_coordinator& coordinator;
};

} // namespace

TEST_CASE_METHOD(fixture, "a shard issues increasing pay_ids of its own space and the store answers the caller") {
  auto creates = std::make_shared<std::vector<payment_record>>();
  auto answers = std::make_shared<std::vector<std::string>>();
  auto store = system.spawn(store_double, creates, false);
  auto shard = spawn_order_shard(system, store, order_shard_settings{9, 3, 0, {}});
  system.spawn(client, shard, std::vector<payment_order>{one("A-1", 100), one("B-1", 100)}, answers);
  system.spawn(client, shard, order("C-1", 100), answers);
  coordinator.run();
  REQUIRE(creates->size() == 3);
  for (const auto& record : *creates) {
    CHECK(record.pay_id.substr(13, 7) == "0000903");  // instance 9, shard 3
    CHECK(record.instance_id == 9);
    CHECK(record.created_at_ms > 0);
  }
  CHECK((*creates)[0].pay_id < (*creates)[1].pay_id);
  CHECK((*creates)[1].pay_id < (*creates)[2].pay_id);
  CHECK((*creates)[0].order.merchant_order_no == "A-1");
  REQUIRE(answers->size() == 3);
  CHECK(std::count(answers->begin(), answers->end(), "created:" + (*creates)[1].pay_id) == 1);
  caf::anon_send_exit(shard, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(store, caf::exit_reason::user_shutdown);
  coordinator.run();
}

TEST_CASE_METHOD(fixture, "a store error reaches every caller and a retry reaches the store again") {
  auto creates = std::make_shared<std::vector<payment_record>>();
  auto answers = std::make_shared<std::vector<std::string>>();
  auto store = system.spawn(store_double, creates, true);
  auto shard = spawn_order_shard(system, store, order_shard_settings{1, 0, 0, {}});
  system.spawn(client, shard, order("A-1", 100), answers);
  system.spawn(client, shard, order("A-1", 100), answers);
  coordinator.run();
  CHECK(*answers == std::vector<std::string>{"error", "error"});
  // A retry goes to the store again.
  system.spawn(client, shard, order("A-1", 100), answers);
  coordinator.run();
  CHECK(creates->size() == 3);
  caf::anon_send_exit(shard, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(store, caf::exit_reason::user_shutdown);
  coordinator.run();
}

TEST_CASE("admission rule: created once, same body existing, any difference conflict") {
  payment_order stored;
  stored.merchant_id = "demo";
  stored.merchant_order_no = "A";
  stored.amount_minor = 1;
  stored.currency = "CNY";
  auto same = stored;
  CHECK(decide_admission(true, stored, same) == admission::created);
  CHECK(decide_admission(false, stored, same) == admission::existing);
  for (int field = 0; field < 5; ++field) {
    auto other = stored;
    switch (field) {
      case 0: other.amount_minor = 2; break;
      case 1: other.currency = "USD"; break;
      case 2: other.subject = "x"; break;
      case 3: other.channel_id = "sim-a"; break;
      case 4: other.expire_seconds = 60; break;
    }
    CHECK(decide_admission(false, stored, other) == admission::conflict);
  }
}
