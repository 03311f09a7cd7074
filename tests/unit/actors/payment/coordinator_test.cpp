// The coordinator's wiring against stand-ins for the store, the reader and a
// channel: the driver's actions reach the right actors and their answers
// come back. The decisions themselves are tested in driver_test.cpp.

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/sec.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <catch2/catch.hpp>

#include "actors/payment/coordinator.hpp"
#include "common/clock.hpp"
#include "common/metrics.hpp"

using namespace paybus;

namespace {

/// What the stand-ins saw, shared with the test thread.
struct seen {
  std::mutex lock;
  std::vector<std::string> pay_requests;    // "channel:pay_id"
  std::vector<std::string> query_requests;  // "channel:pay_id"
  std::vector<payment_result> results;      // written
  int result_writes_to_fail = 0;            // the store fails this many writes first
  int failed_result_writes = 0;

  template <typename F>
  auto with(F f) {
    std::lock_guard<std::mutex> guard{lock};
    return f(*this);
  }
};

store_actor::behavior_type fake_store(std::shared_ptr<seen> log) {
  return {
    [](create_atom, std::vector<payment_record>&, std::vector<nonce_accepted>&) {
      return std::vector<order_stored>{};
    },
    [log](result_atom, payment_result& result) -> caf::result<result_recorded> {
      std::lock_guard<std::mutex> guard{log->lock};
      if (log->failed_result_writes < log->result_writes_to_fail) {
        ++log->failed_result_writes;
        return caf::make_error(caf::sec::runtime_error);
      }
      log->results.push_back(result);
      return result_recorded{true, true, result};
    },
    [](route_atom, payment_routed&) { return true; },
    [](std::vector<nonce_accepted>&) {},
    [](webhook_atom, std::vector<webhook_update>&) { return true; },
    [](delivered_atom, std::vector<uint64_t>&, std::vector<database_conflict>&) {},
    [](reading_atom) {},
    [](attach_atom, caf::actor&, caf::actor&, caf::actor&) {},
    [](admin_atom, std::string&, std::string&, std::string&) { return true; },
    [](resend_atom, std::string&) { return std::make_tuple(false, std::string{}); },
    [](flush_atom) {},
    [](nonce_flush_atom) {},
    [](tick_atom) {},
  };
}

reader_actor::behavior_type fake_reader(int) {
  return {
    [](get_atom, std::string&) { return payment_lookup{}; },
    [](find_atom, std::string&, std::string&) { return payment_lookup{}; },
    [](resume_atom, std::string&, uint32_t) { return std::vector<payment_record>{}; },
    [](inspect_atom, std::string&) { return std::string{}; },
    [](backlog_atom) { return std::string{}; },
  };
}

/// A channel that takes every payment and says it paid it.
channel_actor::behavior_type fake_channel(std::string id, std::shared_ptr<seen> log) {
  return {
    [=](pay_atom, payment_record& record) {
      log->with([&](seen& s) { s.pay_requests.push_back(id + ":" + record.pay_id); });
      return channel_outcome{record.pay_id, id, channel_status::succeeded, id + "-txn", ""};
    },
    [=](query_atom, std::string& pay_id) {
      return log->with([&](seen& s) {
        s.query_requests.push_back(id + ":" + pay_id);
        for (const auto& paid : s.pay_requests)
          if (paid == id + ":" + pay_id)
            return channel_outcome{pay_id, id, channel_status::succeeded, id + "-txn", ""};
        return channel_outcome{pay_id, id, channel_status::not_found, "", ""};
      });
    },
    [](done_atom, uint64_t, channel_outcome&) {},
  };
}

struct coordinator_fixture {
  caf::actor_system_config config;
  std::unique_ptr<caf::actor_system> system;
  metrics figures;
  std::shared_ptr<seen> log = std::make_shared<seen>();
  coordinator_actor coordinator;

  explicit coordinator_fixture(std::vector<std::string> channel_ids) {
    config.add_message_types<caf::id_block::paybus>();
    system = std::make_unique<caf::actor_system>(config);
    std::vector<coordinator_channel> channels;
    for (auto& id : channel_ids) {
      coordinator_channel channel;
      channel.id = id;
      channel.weight = 1;
      channel.handle = system->spawn(fake_channel, id, log);
      channels.push_back(std::move(channel));
    }
    coordinator = spawn_coordinator(*system, system->spawn(fake_store, log),
                                    system->spawn(fake_reader, 0), std::move(channels), 100,
                                    figures);
  }
  ~coordinator_fixture() {
    caf::anon_send_exit(coordinator, caf::exit_reason::user_shutdown);
    system.reset();
  }

  /// Waits (at most 10 s) until `done` holds of what the stand-ins saw.
  template <typename F>
  bool wait_for(F done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
    while (std::chrono::steady_clock::now() < deadline) {
      if (log->with(done))
        return true;
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
    }
    return false;
  }
};

payment_record payment(const std::string& pay_id, int64_t created_ago_ms, int64_t expire_seconds,
                       const std::string& routed_channel) {
  payment_record r;
  r.pay_id = pay_id;
  r.order.merchant_id = "demo";
  r.order.merchant_order_no = "O-" + pay_id;
  r.order.amount_minor = 1999;
  r.order.currency = "CNY";
  r.order.expire_seconds = expire_seconds;
  r.created_at_ms = unix_now_ms() - created_ago_ms;
  r.routed_channel = routed_channel;
  return r;
}

}  // namespace

TEST_CASE("coordinator: a payment is paid through its channel and the answer written (wiring)") {
  coordinator_fixture fixture{{"sim-a"}};
  caf::anon_send(fixture.coordinator, std::vector<payment_record>{payment("P1", 0, 900, "sim-a")});
  REQUIRE(fixture.wait_for([](seen& s) { return !s.results.empty(); }));
  fixture.log->with([](seen& s) {
    CHECK(s.pay_requests == std::vector<std::string>{"sim-a:P1"});
    CHECK(s.results.at(0).status == payment_status::succeeded);
    CHECK(s.results.at(0).source == result_source::channel);
  });
}

TEST_CASE(
  "coordinator: a result the store could not write is asked for again and written (wiring)") {
  coordinator_fixture fixture{{"sim-a"}};
  fixture.log->with([](seen& s) { s.result_writes_to_fail = 1; });
  caf::anon_send(fixture.coordinator, std::vector<payment_record>{payment("P4", 0, 900, "sim-a")});
  REQUIRE(fixture.wait_for([](seen& s) { return !s.results.empty(); }));
  fixture.log->with([](seen& s) {
    CHECK(s.failed_result_writes == 1);
    CHECK(s.pay_requests == std::vector<std::string>{"sim-a:P4"});  // never paid twice
    CHECK(s.query_requests == std::vector<std::string>{"sim-a:P4"});
    REQUIRE(s.results.size() == 1);
    CHECK(s.results[0].status == payment_status::succeeded);
    CHECK(s.results[0].source == result_source::query);
  });
}
