// paybus-sim: a deterministic simulation of the money path. The real
// coordinator rules (payment_driver), the real settlement and the real local
// store (RocksDB in a temporary directory) run against simulated channels and
// a simulated network, in one thread, on a simulated clock, in an order drawn
// from a seed: requests, answers and notifications are delayed, dropped,
// duplicated and reordered; channels take requests late, lag, contradict
// themselves and go down; the bus crashes between any two steps (everything
// in flight to it is lost, the store is closed and opened again). After every
// step the invariants are checked; a broken one prints its seed, and the same
// seed runs the same way again.
//
//   paybus-sim SEEDS [FIRST_SEED]      run seeds FIRST_SEED .. FIRST_SEED+SEEDS-1
//   paybus-sim --seed N --verbose      one seed, every step printed

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include <spdlog/spdlog.h>

#include "actors/payment/driver.hpp"
#include "actors/store/commit.hpp"
#include "common/pay_id.hpp"
#include "storage/local/local_store.hpp"
#include "storage/local/webhook_keys.hpp"

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

namespace paybus::sim {
namespace {

constexpr int64_t start_unix_ms = 1'800'000'000'000;
const std::vector<std::string> channel_ids = {"sim-a", "sim-b"};

/// RocksDB's files in memory, except its OPTIONS files: RocksDB writes one
/// at every open and parses it back to verify it, which took most of the
/// time of a crash and restart (about 4 ms of its 11 families' options).
/// The file is RocksDB's note of the options for its tools, not data: with
/// it refused, RocksDB warns and opens the store just the same.
class memory_without_options_files : public rocksdb::FileSystemWrapper {
public:
  explicit memory_without_options_files(const std::shared_ptr<rocksdb::FileSystem>& memory)
    : rocksdb::FileSystemWrapper(memory) {
  }

  const char* Name() const override {
    return "memory_without_options_files";
  }

  rocksdb::IOStatus NewWritableFile(const std::string& name, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* file,
                                    rocksdb::IODebugContext* debug) override {
    if (name.compare(name.rfind('/') + 1, 7, "OPTIONS") == 0)  // OPTIONS-000005.dbtmp
      return rocksdb::IOStatus::NotSupported("no OPTIONS files in the simulation");
    return target()->NewWritableFile(name, options, file, debug);
  }
};

/// An invariant broke: the message says which and where.
struct broken {
  std::string what;
};

/// How wild a run is, drawn from its seed.
struct faults {
  double drop = 0;         // a message is lost in the network
  double duplicate = 0;    // a message arrives twice
  double crash = 0;        // the bus crashes before a step
  double down = 0;         // a channel refuses a request (nothing taken)
  double late = 0;         // a channel takes a pay request late (within settle_ms)
  double lag = 0;          // a channel answers NOT_FOUND for a payment it holds
  double accepted = 0;     // a channel answers ACCEPTED, and notifies later
  double failed = 0;       // a channel declines
  double notify_loss = 0;  // a notification is lost (the bus then asks)
  int64_t max_delay_ms = 50;
};

/// What a simulated channel holds of one pay_id.
struct held_payment {
  bool paid = false;  // SUCCEEDED here (money taken)
  bool failed = false;
  bool accepted = false;  // taken, settles at `settles_ms` (then paid)
  int64_t settles_ms = 0;
  int64_t taken_ms = 0;
  bool told_accepted = false;  // the bus received an ACCEPTED from here
};

struct sim_channel {
  std::string id;
  std::map<std::string, held_payment> payments;
};

/// One message on its way (or a timer).
struct event {
  enum class kind {
    create,        // the client sends a create (order number `order_no`)
    pay,           // bus -> channel
    query,         // bus -> channel
    pay_answer,    // channel -> bus
    query_answer,  // channel -> bus
    notify,        // channel -> bus
    settle,        // a channel's ACCEPTED payment settles
    store_answer,  // store -> coordinator (an answer to a drive action)
    tick,          // the coordinator's tick
  };
  kind what = kind::tick;
  std::string pay_id;
  std::string channel;
  uint64_t op = 0;
  int order_no = 0;
  payment_record record;
  channel_outcome outcome;
  drive_action::kind action = drive_action::kind::pay;
  bool recorded = false;
  std::vector<payment_record> records;
  uint32_t limit = 0;
  uint64_t generation = 0;  // of the bus that sent it, or that it is for
};

class world {
public:
  world(uint64_t seed, bool verbose) : seed_(seed), rng_(seed), verbose_(verbose) {
    auto u = [&](double low, double high) {
      return std::uniform_real_distribution<double>(low, high)(rng_);
    };
    // Some seeds are calm, some stormy.
    double storm = u(0, 1);
    faults_.drop = storm * u(0, 0.2);
    faults_.duplicate = storm * u(0, 0.2);
    faults_.crash = storm * u(0, 0.03);
    faults_.down = storm * u(0, 0.3);
    faults_.late = u(0, 0.3);
    faults_.lag = storm * u(0, 0.3);
    faults_.accepted = u(0, 0.5);
    faults_.failed = u(0, 0.2);
    faults_.notify_loss = u(0, 0.5);
    faults_.max_delay_ms = static_cast<int64_t>(u(1, 400));
    payments_ = 5 + static_cast<int>(rng_() % 40);
    char name[] = "/tmp/paybus-sim-XXXXXX";
    if (mkdtemp(name) == nullptr)
      throw broken{"cannot make a temporary directory"};
    dir_ = name;
    for (const auto& id : channel_ids)
      channels_[id].id = id;
  }

  ~world() {
    store_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  void run() {
    open_bus();
    // Most orders come in a burst, some later, some in the calm.
    for (int i = 0; i < payments_; ++i)
      schedule(static_cast<int64_t>(i % 3 == 0 ? rng_() % 70'000 : rng_() % 3000), create_event(i));
    // The storm: faults as drawn, for a simulated minute.
    run_until(60'000, true);
    // The calm: no faults, until every acknowledged payment is final.
    storm_over_ = true;
    if (!bus_up_)
      open_bus();
    run_until(now_ + 600'000, false);
    check_finished();
  }

private:
  // --- the bus -------------------------------------------------------------

  void open_bus() {
    ++generation_;
    std::string error;
    local_store_options options;
    options.min_free_bytes = 0;
    // A crash here closes the store (its writes are all in RocksDB's log):
    // what a synced batch promises across a power failure is the crash
    // test's (tests/e2e/test_crash.py), not this one's. Unsynced, a seed
    // runs in milliseconds.
    options.sync = false;
    options.env = env_.get();
    options.file_opening_threads = 1;
    options.block_cache_bytes = 1u << 20;
    options.write_buffer_bytes = 1u << 20;
    store_ = local_store::open(dir_ + "/store", options, error);
    if (!store_)
      throw broken{"cannot open the store: " + error};
    std::vector<driver_channel> channels;
    for (const auto& id : channel_ids)
      channels.push_back({id, 1, 4, settle_ms});
    // A small memory, so that payments wait in the store and are read back.
    driver_ = std::make_unique<payment_driver>(channels, 4 + rng_() % 8, rule_timing{},
                                               moment_now(), rng_(), driver_limits{});
    int64_t floor = now_unix();
    if (auto last = parse_pay_id(store_->last_pay_id()))
      floor = std::max(floor, last->unix_ms);
    ids_ = std::make_unique<pay_id_generator>(1, 0, floor);
    bus_up_ = true;
    ++now_;  // the next time step: a new generator never reuses the floor's
    schedule(0, tick_event());
    say("bus started (generation " + std::to_string(generation_) + ")");
  }

  void crash() {
    say("crash");
    ++crashes_;
    driver_.reset();
    store_.reset();
    bus_up_ = false;
    // Everything on its way to the bus is lost with it.
    for (auto it = queue_.begin(); it != queue_.end();) {
      auto what = it->second.what;
      if (what == event::kind::pay_answer || what == event::kind::query_answer
          || what == event::kind::store_answer || what == event::kind::tick)
        it = queue_.erase(it);
      else
        ++it;
    }
    schedule(1 + static_cast<int64_t>(rng_() % 2000), restart_event());
  }

  moment moment_now() const {
    return {now_, now_unix()};
  }
  int64_t now_unix() const {
    return start_unix_ms + now_;
  }

  void carry_out(const drive_actions& actions) {
    for (const auto& action : actions) {
      say("bus: action " + std::to_string(static_cast<int>(action.what)) + " " + action.pay_id + " "
          + action.channel_id
          + (action.what == drive_action::kind::record_result
               ? std::string{" "} + to_string(action.result.status)
               : std::string{}));
      switch (action.what) {
        case drive_action::kind::record_route: {
          store_batch batch;
          batch.routes.push_back({action.pay_id, action.channel_id});
          auto answers = commit_batch(batch);
          auto answer = store_answer(action);
          answer.recorded = answers.routes.at(0);
          send_to_bus(answer);
          break;
        }
        case drive_action::kind::record_held: {
          store_batch batch;
          batch.routes.push_back({action.pay_id, action.channel_id, true});
          commit_batch(batch);
          break;
        }
        case drive_action::kind::record_result: {
          store_batch batch;
          batch.results.push_back(action.result);
          commit_batch(batch);
          send_to_bus(store_answer(action));
          break;
        }
        case drive_action::kind::read_unfinished: {
          auto answer = store_answer(action);
          auto status = store_->pending_dispatch(answer.records, action.limit, action.from);
          if (!status.ok())
            throw broken{"pending_dispatch: " + status.ToString()};
          answer.limit = action.limit;
          send_to_bus(answer);
          break;
        }
        case drive_action::kind::pay:
        case drive_action::kind::query: {
          event request;
          request.what = action.what == drive_action::kind::pay ? event::kind::pay
                                                                : event::kind::query;
          request.pay_id = action.pay_id;
          request.channel = action.channel_id;
          request.op = action.op;
          request.record = action.record;
          request.generation = generation_;
          if (!storm_over_ && chance(faults_.down)) {
            // Refused before a byte left the bus (no connection, breaker
            // open, queue full): UNAVAILABLE, and the channel never sees it.
            event answer;
            answer.what = request.what == event::kind::pay ? event::kind::pay_answer
                                                           : event::kind::query_answer;
            answer.pay_id = action.pay_id;
            answer.channel = action.channel_id;
            answer.op = action.op;
            answer.outcome = {action.pay_id, action.channel_id, channel_status::unavailable, "",
                              "down"};
            answer.generation = generation_;
            schedule(1, answer);
            break;
          }
          send(request, request.what == event::kind::pay);
          break;
        }
        case drive_action::kind::contradiction:
          ++contradictions_;
          break;
        case drive_action::kind::unknown_channel:
          throw broken{"a payment was routed to a channel that does not exist"};
      }
    }
  }

  store_batch_answers commit_batch(const store_batch& batch) {
    dirty_ = true;
    store_batch_answers answers;
    settlement_policy every_payment_notified;
    auto status = commit(*store_, batch, every_payment_notified, now_unix(), answers);
    if (!status.ok())
      throw broken{"commit: " + status.ToString()};
    return answers;
  }

  event store_answer(const drive_action& action) {
    event answer;
    answer.what = event::kind::store_answer;
    answer.action = action.what;
    answer.pay_id = action.pay_id;
    answer.op = action.op;
    answer.generation = generation_;
    return answer;
  }

  void send_to_bus(event answer) {
    // The store is in the same process: its answers are never lost but to
    // a crash, and come back a little later (reads later still).
    schedule(static_cast<int64_t>(
               rng_() % (answer.action == drive_action::kind::read_unfinished ? 200 : 5)),
             std::move(answer));
  }

  void on_bus(const event& e) {
    if (!bus_up_ || e.generation != generation_)
      return;  // for a bus that crashed
    if (e.what == event::kind::pay_answer || e.what == event::kind::query_answer)
      say("bus hears " + e.channel + " on " + e.pay_id + ": " + to_string(e.outcome.status));
    auto now = moment_now();
    switch (e.what) {
      case event::kind::tick:
        carry_out(driver_->tick(now));
        schedule(100, tick_event());
        break;
      case event::kind::pay_answer:
        carry_out(driver_->paid(e.pay_id, e.op, e.outcome, now));
        break;
      case event::kind::query_answer:
        carry_out(driver_->queried(e.pay_id, e.op, e.outcome, now));
        break;
      case event::kind::store_answer:
        switch (e.action) {
          case drive_action::kind::record_route:
            carry_out(driver_->route_recorded(e.pay_id, e.op, e.recorded, now));
            break;
          case drive_action::kind::record_result:
            driver_->result_written(e.pay_id, e.op);
            break;
          case drive_action::kind::read_unfinished:
            carry_out(driver_->unfinished_read(e.records, e.limit, now));
            break;
          default:
            break;
        }
        break;
      default:
        break;
    }
  }

  void on_create(const event& e) {
    if (!bus_up_) {
      schedule(200, create_event(e.order_no));  // the client retries later
      return;
    }
    payment_record record;
    record.order.merchant_id = "demo";
    record.order.merchant_order_no = "O-" + std::to_string(e.order_no);
    record.order.amount_minor = 100 + e.order_no;
    record.order.currency = "CNY";
    record.order.notify_url = "http://merchant/notify";
    record.order.expire_seconds = 60 + static_cast<int64_t>(rng_() % 120);
    record.pay_id = ids_->next(now_unix());
    record.instance_id = 1;
    record.created_at_ms = now_unix();
    if (rng_() % 2 == 0)  // chosen at acceptance, as the order shard does
      record.routed_channel = channel_ids[rng_() % channel_ids.size()];
    store_batch batch;
    batch.creates.push_back(record);
    auto answers = commit_batch(batch);
    const auto& stored = answers.creates.at(0);
    auto& known = acknowledged_[e.order_no];
    if (!known.empty() && known != stored.record.pay_id)
      throw broken{"order O-" + std::to_string(e.order_no) + " acknowledged as " + known
                   + " and again as " + stored.record.pay_id};
    known = stored.record.pay_id;
    say("created " + known + " (O-" + std::to_string(e.order_no) + ")");
    // The answer may be lost: the client sends the same order again.
    if (!storm_over_ && chance(faults_.drop))
      schedule(50, create_event(e.order_no));
    if (stored.created)
      carry_out(driver_->admit({stored.record}, false, moment_now()));
  }

  void on_notify(const event& e) {
    if (!bus_up_)
      return;
    store_batch batch;
    payment_result result;
    result.pay_id = e.pay_id;
    result.status = payment_status::succeeded;
    result.channel_id = e.channel;
    result.amount_minor = e.record.order.amount_minor;
    result.finished_at_ms = now_unix();
    result.source = result_source::notify;
    batch.results.push_back(result);
    auto answers = commit_batch(batch);
    const auto& recorded = answers.results.at(0);
    if (recorded.joined && recorded.changed)
      driver_->settled(e.pay_id);
  }

  // --- the channels ---------------------------------------------------------

  void on_channel(const event& e) {
    dirty_ = true;
    auto& channel = channels_.at(e.channel);
    auto& held = channel.payments[e.pay_id];
    bool exists = channel.payments.count(e.pay_id) > 0
                  && (held.paid || held.failed || held.accepted);
    channel_outcome outcome{e.pay_id, e.channel, channel_status::unknown, "", ""};
    if (e.what == event::kind::pay) {
      if (exists) {
        outcome.status = channel_status::unknown;  // a 409: it holds it already
      } else {
        held.taken_ms = now_;
        double draw = std::uniform_real_distribution<double>(0, 1)(rng_);
        if (draw < faults_.failed) {
          held.failed = true;
          outcome.status = channel_status::failed;
        } else if (draw < faults_.failed + faults_.accepted) {
          held.accepted = true;
          held.settles_ms = now_ + 100 + static_cast<int64_t>(rng_() % 3000);
          outcome.status = channel_status::accepted;
          event settle;
          settle.what = event::kind::settle;
          settle.pay_id = e.pay_id;
          settle.channel = e.channel;
          settle.record = e.record;
          schedule(held.settles_ms - now_, settle);
        } else {
          held.paid = true;
          outcome.status = channel_status::succeeded;
          outcome.channel_txn_id = e.channel + "-" + e.pay_id;
        }
      }
    } else {
      // A lagging replica: NOT_FOUND for a payment the bus heard it holds
      // (the bus must not believe it). Any other NOT_FOUND for a payment it
      // took would be a lie the bus cannot tell from the truth.
      bool lagging = !storm_over_ && exists && held.told_accepted && chance(faults_.lag);
      if (!exists || lagging)
        outcome.status = channel_status::not_found;
      else if (held.paid)
        outcome.status = channel_status::succeeded;
      else if (held.failed)
        outcome.status = channel_status::failed;
      else
        outcome.status = channel_status::accepted;
      if (held.paid)
        outcome.channel_txn_id = e.channel + "-" + e.pay_id;
    }
    if (!exists && !(held.paid || held.failed || held.accepted))
      channel.payments.erase(e.pay_id);
    say(e.channel + (e.what == event::kind::pay ? " paid? " : " queried ") + e.pay_id + ": "
        + to_string(outcome.status));
    event answer;
    answer.what = e.what == event::kind::pay ? event::kind::pay_answer : event::kind::query_answer;
    answer.pay_id = e.pay_id;
    answer.channel = e.channel;
    answer.op = e.op;
    answer.outcome = outcome;
    answer.generation = e.generation;
    send(answer, false);
  }

  void on_settle(const event& e) {
    dirty_ = true;
    auto& held = channels_.at(e.channel).payments.at(e.pay_id);
    held.accepted = false;
    held.paid = true;
    // Notified, perhaps more than once, perhaps not at all (then the bus asks).
    for (int i = 0; i < 3; ++i) {
      if (chance(faults_.notify_loss) && !storm_over_)
        continue;
      event notify;
      notify.what = event::kind::notify;
      notify.pay_id = e.pay_id;
      notify.channel = e.channel;
      notify.record = e.record;
      schedule(delay(), notify);
      if (!chance(faults_.duplicate))
        break;
    }
  }

  // --- the network ------------------------------------------------------------

  void send(event e, bool may_be_late) {
    say("sends " + describe(e));
    if (!storm_over_ && chance(faults_.drop)) {
      say("dropped " + describe(e));
      return;
    }
    int64_t at = delay();
    // A channel's queue may hold a pay request, within the settle time.
    if (may_be_late && chance(faults_.late))
      at += static_cast<int64_t>(rng_() % static_cast<uint64_t>(settle_ms * 3 / 4));
    if (!storm_over_ && chance(faults_.duplicate))
      schedule(delay(), e);
    schedule(at, std::move(e));
  }

  int64_t delay() {
    return 1 + static_cast<int64_t>(rng_() % static_cast<uint64_t>(faults_.max_delay_ms));
  }

  void schedule(int64_t after_ms, event e) {
    queue_.emplace(std::make_pair(now_ + after_ms, sequence_++), std::move(e));
  }

  void run_until(int64_t until_ms, bool storm) {
    while (!queue_.empty() && queue_.begin()->first.first <= until_ms) {
      if (!storm && dirty_since_final_check_ && all_final())
        return;
      dirty_since_final_check_ = false;
      if (storm && bus_up_ && chance(faults_.crash))
        crash();
      auto next = queue_.begin();
      now_ = std::max(now_, next->first.first);
      auto e = std::move(next->second);
      queue_.erase(next);
      ++steps_;
      step(e);
      if (dirty_) {
        check();
        dirty_ = false;
        dirty_since_final_check_ = true;
      }
    }
  }

  void step(const event& e) {
    switch (e.what) {
      case event::kind::create:
        on_create(e);
        break;
      case event::kind::pay:
      case event::kind::query:
        on_channel(e);
        break;
      case event::kind::settle:
        on_settle(e);
        break;
      case event::kind::notify:
        on_notify(e);
        break;
      case event::kind::pay_answer:
      case event::kind::query_answer:
        on_bus(e);
        // The bus heard the channel hold it once it keeps that word.
        if (e.outcome.status == channel_status::accepted && bus_up_) {
          std::optional<payment_record> record;
          if (store_->get(e.pay_id, record).ok() && record && record->held
              && record->routed_channel == e.channel)
            channels_.at(e.channel).payments[e.pay_id].told_accepted = true;
        }
        break;
      case event::kind::store_answer:
      case event::kind::tick:
        on_bus(e);
        break;
    }
    if (e.what == event::kind::tick && e.order_no == -1 && !bus_up_)  // a restart
      open_bus();
  }

  event create_event(int order_no) const {
    event e;
    e.what = event::kind::create;
    e.order_no = order_no;
    return e;
  }

  event tick_event() const {
    event e;
    e.what = event::kind::tick;
    e.generation = generation_;
    return e;
  }

  event restart_event() const {
    event e;
    e.what = event::kind::tick;
    e.order_no = -1;
    e.generation = 0;  // for no bus
    return e;
  }

  bool chance(double p) {
    return std::uniform_real_distribution<double>(0, 1)(rng_) < p;
  }

  // --- the invariants ---------------------------------------------------------

  void check() {
    // No pay_id paid by two channels.
    std::map<std::string, std::vector<std::string>> paid_by;
    for (const auto& [id, channel] : channels_)
      for (const auto& [pay_id, held] : channel.payments)
        if (held.paid || held.accepted)
          paid_by[pay_id].push_back(id);
    for (const auto& [pay_id, ids] : paid_by)
      if (ids.size() > 1)
        throw broken{"pay_id " + pay_id + " paid by " + ids[0] + " and " + ids[1]};
    if (!bus_up_)
      return;
    // The webhook entries of every payment, read once (nothing delivers
    // them here).
    std::map<std::string, int> webhooks;
    auto read = store_->scan("webhooks", "", [&](std::string_view, std::string_view value) {
      codec::webhook_entry entry;
      if (!codec::decode_webhook(value, entry))
        throw broken{"an unreadable webhook entry"};
      ++webhooks[entry.pay_id];
      return true;
    });
    if (!read.ok())
      throw broken{"scan webhooks: " + read.ToString()};
    for (const auto& [order_no, pay_id] : acknowledged_) {
      std::optional<payment_record> record;
      auto status = store_->get(pay_id, record);
      if (!status.ok())
        throw broken{"get: " + status.ToString()};
      if (!record)
        throw broken{"acknowledged payment " + pay_id + " is not in the store"};
      auto& first = final_seen_[pay_id];
      if (is_final_status(record->status)) {
        if (first && *first != record->status)
          throw broken{"payment " + pay_id + " was " + to_string(*first) + ", now "
                       + to_string(record->status)};
        first = record->status;
        check_final(*record, webhooks[pay_id]);
      } else if (first) {
        throw broken{"payment " + pay_id + " was " + to_string(*first) + ", now PROCESSING"};
      }
    }
    check_outbox();
  }

  void check_final(const payment_record& record, int webhooks) {
    std::optional<payment_result> result;
    auto status = store_->get_result(record.pay_id, result);
    if (!status.ok() || !result || result->status != record.status || result->flagged)
      throw broken{"final payment " + record.pay_id + " without its result"};
    if (record.status == payment_status::succeeded) {
      const auto& held = channels_.at(result->channel_id).payments;
      auto found = held.find(record.pay_id);
      if (found == held.end() || !found->second.paid)
        throw broken{"payment " + record.pay_id + " SUCCEEDED through " + result->channel_id
                     + ", which did not pay it"};
    } else {
      for (const auto& [id, channel] : channels_)
        if (auto found = channel.payments.find(record.pay_id);
            found != channel.payments.end() && (found->second.paid || found->second.accepted))
          throw broken{"payment " + record.pay_id + " is " + to_string(record.status) + " but " + id
                       + " took the money"};
    }
    if (webhooks != 1)
      throw broken{"final payment " + record.pay_id + " has " + std::to_string(webhooks)
                   + " webhook entries"};
  }

  void check_outbox() {
    std::vector<outbox_entry> entries;
    auto status = store_->read_outbox(0, 100'000, entries);
    if (!status.ok())
      throw broken{"read_outbox: " + status.ToString()};
    std::set<std::string> orders, results;
    for (const auto& entry : entries) {
      auto& seen = entry.kind == 'O' ? orders : results;
      if (!seen.insert(entry.pay_id).second)
        throw broken{std::string{"outbox holds the "} + entry.kind + " row of " + entry.pay_id
                     + " twice"};
      if (entry.kind == 'R' && orders.count(entry.pay_id) == 0)
        throw broken{"outbox holds the result row of " + entry.pay_id + " before its order's"};
    }
  }

  bool all_final() {
    if (!bus_up_ || acknowledged_.size() < static_cast<size_t>(payments_))
      return false;
    for (const auto& [order_no, pay_id] : acknowledged_) {
      std::optional<payment_record> record;
      if (!store_->get(pay_id, record).ok() || !record || !is_final_status(record->status))
        return false;
    }
    return true;
  }

  void check_finished() {
    if (!all_final())
      throw broken{"after the calm, not every acknowledged payment is final ("
                   + std::to_string(acknowledged_.size()) + " of " + std::to_string(payments_)
                   + " acknowledged)"};
    // Every payment a channel took the money for is SUCCEEDED through it.
    for (const auto& [id, channel] : channels_)
      for (const auto& [pay_id, held] : channel.payments)
        if (held.paid) {
          std::optional<payment_record> record;
          std::optional<payment_result> result;
          store_->get(pay_id, record);
          store_->get_result(pay_id, result);
          if (!record || record->status != payment_status::succeeded || !result
              || result->channel_id != id)
            throw broken{id + " took the money for " + pay_id + ", which the bus holds as "
                         + (record ? to_string(record->status) : "nothing")};
        }
  }

  std::string describe(const event& e) const {
    return std::to_string(static_cast<int>(e.what)) + " " + e.pay_id + " " + e.channel;
  }

  void say(const std::string& line) const {
    if (verbose_)
      std::printf("%8lld ms  %s\n", static_cast<long long>(now_), line.c_str());
  }

public:
  uint64_t steps() const {
    return steps_;
  }
  int crashes() const {
    return crashes_;
  }
  int contradictions() const {
    return contradictions_;
  }

private:
  static constexpr int64_t settle_ms = 2000;
  uint64_t seed_;
  std::mt19937_64 rng_;
  bool verbose_;
  faults faults_;
  int payments_ = 0;
  std::string dir_;
  int64_t now_ = 0;
  uint64_t sequence_ = 0;
  std::multimap<std::pair<int64_t, uint64_t>, event> queue_;
  std::map<std::string, sim_channel> channels_;
  // RocksDB's files in memory: they outlive a crash of the bus (a closed
  // store), not the run.
  std::unique_ptr<rocksdb::Env> memory_{rocksdb::NewMemEnv(rocksdb::Env::Default())};
  std::unique_ptr<rocksdb::Env> env_{rocksdb::NewCompositeEnv(
    std::make_shared<memory_without_options_files>(memory_->GetFileSystem()))};
  std::unique_ptr<local_store> store_;
  std::unique_ptr<payment_driver> driver_;
  std::unique_ptr<pay_id_generator> ids_;
  bool bus_up_ = false;
  bool storm_over_ = false;
  bool dirty_ = false;  // something changed since the last check
  bool dirty_since_final_check_ = true;
  uint64_t generation_ = 0;
  std::map<int, std::string> acknowledged_;  // order number -> pay_id
  std::map<std::string, std::optional<payment_status>> final_seen_;
  uint64_t steps_ = 0;
  int crashes_ = 0;
  int contradictions_ = 0;
};

}  // namespace
}  // namespace paybus::sim

namespace {

volatile uint64_t running_seed = 0;

/// A PAYBUS_ASSERT in the bus's code aborts: say which seed did it.
void on_abort(int) {
  char line[160];
  int length = std::snprintf(line, sizeof line,
                             "seed %llu broke an invariant (the assertion above)\n  rerun: "
                             "paybus-sim --seed %llu --verbose\n",
                             static_cast<unsigned long long>(running_seed),
                             static_cast<unsigned long long>(running_seed));
  if (length > 0)
    (void) !write(STDOUT_FILENO, line, static_cast<size_t>(length));
  std::signal(SIGABRT, SIG_DFL);
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::off);
  std::signal(SIGABRT, on_abort);  // RocksDB's notes; failures are printed below
  uint64_t seeds = 100, first = 1;
  bool verbose = false;
  std::vector<std::string> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--seed" && i + 1 < args.size()) {
      first = std::strtoull(args[++i].c_str(), nullptr, 10);
      seeds = 1;
    } else if (args[i] == "--verbose") {
      verbose = true;
    } else if (i == 0) {
      seeds = std::strtoull(args[i].c_str(), nullptr, 10);
    } else {
      first = std::strtoull(args[i].c_str(), nullptr, 10);
    }
  }
  uint64_t steps = 0, crashes = 0, contradictions = 0;
  for (uint64_t seed = first; seed < first + seeds; ++seed) {
    running_seed = seed;
    try {
      paybus::sim::world world{seed, verbose};
      world.run();
      steps += world.steps();
      crashes += static_cast<uint64_t>(world.crashes());
      contradictions += static_cast<uint64_t>(world.contradictions());
    } catch (const paybus::sim::broken& failure) {
      std::printf("seed %llu broke an invariant: %s\n  rerun: paybus-sim --seed %llu --verbose\n",
                  static_cast<unsigned long long>(seed), failure.what.c_str(),
                  static_cast<unsigned long long>(seed));
      return 1;
    }
  }
  std::printf("%llu seeds (%llu..%llu): %llu steps, %llu crashes, %llu contradictions "
              "reported; no invariant broken\n",
              static_cast<unsigned long long>(seeds), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + seeds - 1),
              static_cast<unsigned long long>(steps), static_cast<unsigned long long>(crashes),
              static_cast<unsigned long long>(contradictions));
  return 0;
}
