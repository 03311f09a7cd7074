// The store writer's group commit over a real local store: what arrives
// while a commit is not yet due joins it; with `gather_us`, a commit waits
// that long after the previous one began; nonces ride with the next commit.

#include <chrono>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <catch2/catch.hpp>

#include "actors/store/store_actor.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/metrics.hpp"
#include "storage/local/local_store.hpp"

using namespace paybus;

namespace {

struct writer_fixture {
  std::string dir
    = (std::filesystem::temp_directory_path() / ("paybus-writer-test-" + crypto::random_token(8)))
        .string();
  std::unique_ptr<local_store> store;
  caf::actor_system_config config;
  std::unique_ptr<caf::actor_system> system;
  metrics figures;

  writer_fixture() {
    std::string error;
    store = local_store::open(dir, local_store_options{}, error);
    INFO(error);
    REQUIRE(store);
    config.add_message_types<caf::id_block::paybus>();
    system = std::make_unique<caf::actor_system>(config);
  }
  ~writer_fixture() {
    system.reset();  // every actor done before the store closes
    store.reset();
    std::filesystem::remove_all(dir);
  }

  store_actor writer(int64_t gather_us, int64_t nonce_delay_ms = 50) {
    store_actor_limits limits;
    limits.gather_us = gather_us;
    limits.nonce_delay_ms = nonce_delay_ms;
    return spawn_store(*system, *store, figures, limits);
  }
};

std::vector<payment_record> order(int n) {
  payment_record r;
  r.pay_id = "17637822001230000100000" + std::to_string(n);
  r.order.merchant_id = "demo";
  r.order.merchant_order_no = "G-" + std::to_string(n);
  r.order.amount_minor = 100;
  r.order.currency = "CNY";
  return {r};
}

bool nonce_stored(local_store& store, const std::string& nonce) {
  return store.nonce_seen("demo", nonce, 1'763'782'200'000).value_or(false);
}

std::vector<nonce_accepted> nonces(const std::string& nonce) {
  return {nonce_accepted{"demo", nonce, 1'763'782'200'000}};
}

/// Sends each batch of orders without waiting, then waits for every answer.
void create_together(caf::scoped_actor& self, const store_actor& writer,
                     const std::vector<int>& numbers) {
  std::vector<decltype(self->request(writer, caf::infinite, create_atom::value, order(0),
                                     std::vector<nonce_accepted>{}))>
    handles;
  for (int n : numbers)
    handles.push_back(self->request(writer, caf::infinite, create_atom::value, order(n),
                                    std::vector<nonce_accepted>{}));
  for (auto& handle : handles)
    handle.receive([](std::vector<order_stored>& stored) { CHECK(stored.at(0).created); },
                   [](caf::error& error) { FAIL(caf::to_string(error)); });
}

/// Sends order `n` again and waits for the answer: the payment it made before.
void create_existing(caf::scoped_actor& self, const store_actor& writer, int n) {
  self
    ->request(writer, std::chrono::seconds{10}, create_atom::value, order(n),
              std::vector<nonce_accepted>{})
    .receive([](std::vector<order_stored>& stored) { CHECK_FALSE(stored.at(0).created); },
             [](caf::error& error) { FAIL(caf::to_string(error)); });
}

}  // namespace

TEST_CASE("the store writer commits at once by default, one synced batch per request that waits") {
  writer_fixture fixture;
  auto writer = fixture.writer(0);
  caf::scoped_actor self{*fixture.system};
  for (int n = 1; n <= 3; ++n)
    create_together(self, writer, {n});
  CHECK(fixture.figures.store_batches_total == 3);
  CHECK(fixture.figures.store_batched_writes_total == 3);
  self->send_exit(writer, caf::exit_reason::user_shutdown);
}

TEST_CASE("with gather_us, what arrives before the next commit is due joins it") {
  writer_fixture fixture;
  auto writer = fixture.writer(300'000);
  caf::scoped_actor self{*fixture.system};
  create_together(self, writer, {1});  // nothing committed before: at once
  CHECK(fixture.figures.store_batches_total == 1);
  auto sent = std::chrono::steady_clock::now();
  create_together(self, writer, {2, 3, 4});
  auto waited = std::chrono::steady_clock::now() - sent;
  CHECK(fixture.figures.store_batches_total == 2);
  CHECK(fixture.figures.store_batched_writes_total == 4);
  // The second commit began no sooner than 300 ms after the first began,
  // which was before `sent`, less the first commit's own time.
  CHECK(waited >= std::chrono::milliseconds{200});
  self->send_exit(writer, caf::exit_reason::user_shutdown);
}

/// Sends nonces alone and checks, 100 ms on, that they wait uncommitted.
/// The 100 ms also let the writer take them from its mailbox before
/// anything sent next (an exit message is urgent and would be seen first).
void send_nonce_that_waits(writer_fixture& fixture, caf::scoped_actor& self,
                           const store_actor& writer, const std::string& nonce) {
  self->send(writer, nonces(nonce));
  std::this_thread::sleep_for(std::chrono::milliseconds{100});
  CHECK(fixture.figures.store_batches_total == 0);
  CHECK_FALSE(nonce_stored(*fixture.store, nonce));
}

TEST_CASE("nonces alone are committed after nonce_delay_ms, not at once") {
  writer_fixture fixture;
  auto writer = fixture.writer(0, 300);
  caf::scoped_actor self{*fixture.system};
  send_nonce_that_waits(fixture, self, writer, "nonce-alone-000001");
  for (int i = 0; i < 500 && fixture.figures.store_batches_total == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  CHECK(fixture.figures.store_batches_total == 1);
  CHECK(nonce_stored(*fixture.store, "nonce-alone-000001"));
  self->send_exit(writer, caf::exit_reason::user_shutdown);
}

TEST_CASE("nonces ride with the next commit") {
  writer_fixture fixture;
  auto writer = fixture.writer(0, 60'000);
  caf::scoped_actor self{*fixture.system};
  self->send(writer, nonces("nonce-rides-000001"));
  create_together(self, writer, {1});
  CHECK(fixture.figures.store_batches_total == 1);
  CHECK(nonce_stored(*fixture.store, "nonce-rides-000001"));
  self->send_exit(writer, caf::exit_reason::user_shutdown);
}

TEST_CASE("a stop commits the nonces still waiting") {
  writer_fixture fixture;
  auto writer = fixture.writer(0, 60'000);
  caf::scoped_actor self{*fixture.system};
  send_nonce_that_waits(fixture, self, writer, "nonce-stop-0000001");
  self->send_exit(writer, caf::exit_reason::user_shutdown);
  self->wait_for(writer);
  CHECK(fixture.figures.store_batches_total == 1);
  CHECK(nonce_stored(*fixture.store, "nonce-stop-0000001"));
}

namespace {

/// The wakes in `self`'s mailbox now. Call it after the answer to a request
/// to the writer: every wake the writer sent before that answer is there.
int wakes_waiting(caf::scoped_actor& self) {
  int wakes = 0;
  bool more = true;
  while (more)
    self->receive([&](wake_atom) { ++wakes; },
                  caf::after(std::chrono::seconds{0}) >> [&] { more = false; });
  return wakes;
}

}  // namespace

TEST_CASE("the writer wakes the database sink once, until the sink begins a round") {
  writer_fixture fixture;
  auto writer = fixture.writer(0);
  caf::scoped_actor self{*fixture.system};
  self->send(writer, attach_atom::value, caf::actor_cast<caf::actor>(self), caf::actor{},
             caf::actor{});
  create_together(self, writer, {1});  // a wake, owed until the sink begins a round
  create_together(self, writer, {2});  // none more meanwhile
  create_existing(self, writer, 1);    // the same order again: no outbox row, no wake
  CHECK(wakes_waiting(self) == 1);
  // The sink begins a round. A commit came while the wake was owed, and the
  // round's read may have begun before it: the sink is woken once more.
  self->send(writer, reading_atom::value);
  create_existing(self, writer, 1);
  CHECK(wakes_waiting(self) == 1);
  // That round begins; nothing was committed meanwhile: no wake.
  self->send(writer, reading_atom::value);
  create_existing(self, writer, 1);
  CHECK(wakes_waiting(self) == 0);
  // The next commit wakes it again.
  create_together(self, writer, {3});
  create_existing(self, writer, 1);
  CHECK(wakes_waiting(self) == 1);
  self->send_exit(writer, caf::exit_reason::user_shutdown);
}

TEST_CASE("the writer applies the notifier's outcomes and tells it which queues it put to") {
  writer_fixture fixture;
  auto writer = fixture.writer(0);
  caf::scoped_actor self{*fixture.system};
  self->send(writer, attach_atom::value, caf::actor{}, caf::actor_cast<caf::actor>(self),
             caf::actor{});
  create_together(self, writer, {1});
  payment_result paid;
  paid.pay_id = order(1).front().pay_id;
  paid.status = payment_status::succeeded;
  paid.channel_id = "sim-a";
  paid.amount_minor = 100;
  paid.finished_at_ms = unix_now_ms();
  paid.source = result_source::channel;
  self->request(writer, std::chrono::seconds{10}, result_atom::value, paid)
    .receive([](result_recorded& recorded) { CHECK(recorded.joined); },
             [](caf::error& error) { FAIL(caf::to_string(error)); });
  auto told = [&] {
    std::vector<webhook_queued> queued;
    self->receive([&](std::vector<webhook_queued>& put) { queued = std::move(put); },
                  caf::after(std::chrono::seconds{10}) >>
                    [] { FAIL("the notifier was not told"); });
    return queued;
  };
  auto first = told();
  REQUIRE(first.size() == 1);
  CHECK(first[0].merchant_id == "demo");
  CHECK(fixture.store->webhook_backlog() == 1);
  auto due_at = [&](int64_t now_ms) {
    webhook_cursor cursor;
    std::vector<webhook_entry> due;
    std::optional<int64_t> next_due;
    REQUIRE(fixture.store
              ->due_webhooks(
                now_ms, monotonic_now_ms(), [](const std::string&) { return size_t{10}; }, cursor,
                due, next_due)
              .ok());
    return due;
  };
  auto due = due_at(std::numeric_limits<int64_t>::max());
  REQUIRE(due.size() == 1);
  auto entry = due[0];
  CHECK(entry.due_ms == first[0].due_ms);
  auto hand_back = [&](int64_t next_due_ms) {
    webhook_update update{entry.merchant_id,  entry.event_id, entry.pay_id, entry.attempt,
                          entry.first_due_ms, entry.due_ms,   next_due_ms};
    self
      ->request(writer, std::chrono::seconds{10}, webhook_atom::value,
                std::vector<webhook_update>{update})
      .receive([](bool applied) { CHECK(applied); },
               [](caf::error& error) { FAIL(caf::to_string(error)); });
  };
  // Not delivered: queued again a minute on, one attempt more, and the notifier told.
  hand_back(entry.due_ms + 60'000);
  auto again = told();
  REQUIRE(again.size() == 1);
  CHECK(again[0].due_ms == entry.due_ms + 60'000);
  CHECK(due_at(entry.due_ms + 59'999).empty());
  due = due_at(entry.due_ms + 60'000);
  REQUIRE(due.size() == 1);
  CHECK(due[0].attempt == entry.attempt + 1);
  CHECK(fixture.store->webhook_backlog() == 1);
  // Delivered: gone.
  entry = due[0];
  hand_back(0);
  CHECK(due_at(std::numeric_limits<int64_t>::max()).empty());
  CHECK(fixture.store->webhook_backlog() == 0);
  self->send_exit(writer, caf::exit_reason::user_shutdown);
}
