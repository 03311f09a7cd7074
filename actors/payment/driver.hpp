#pragma once

// The coordinator's decisions as a pure state machine: which payment goes to
// which channel and when, when a channel is asked again, when a payment is
// closed, how many requests each channel has outstanding, what waits in
// memory and what is read back from the store. No actors, no clock, no I/O:
// every event comes in with the time it happened, and what the world must do
// next comes out as actions, which the coordinator actor carries out and
// whose answers it feeds back as events. Unit tests (and the deterministic
// simulation to come) drive it directly.

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "actors/payment/payment_rules.hpp"
#include "messages/types.hpp"

namespace paybus {

/// The time of an event: the monotonic clock for waits, the wall clock for
/// what is written (finished_at) and for expiry (created_at is wall time).
struct moment {
  int64_t monotonic_ms = 0;
  int64_t unix_ms = 0;
};

/// A channel as the driver sees it.
struct driver_channel {
  std::string id;
  int64_t weight = 0;
  size_t max_in_flight = 16;   // requests outstanding at once
  int64_t settle_ms = 10'000;  // a NOT_FOUND is believed this long after a pay request left
  bool enabled = true;         // takes new payments (what it holds is still asked)
};

/// Something the coordinator is to do for the driver.
struct drive_action {
  enum class kind : uint8_t {
    record_route,     // store: payment `pay_id` goes to `channel_id` (before it is sent)
    pay,              // channel `channel_id`: pay `record`
    query,            // channel `channel_id`: what became of `pay_id`?
    record_result,    // store: `result`
    read_unfinished,  // reader: unfinished payments from `from`, at most `limit`
    unknown_channel,  // log: `pay_id` was sent to `channel_id`, no longer configured
    record_held,      // store, no answer awaited: `channel_id` said it holds `pay_id`
    contradiction,    // report: `channel_id` said NOT_FOUND for `pay_id`, which it holds
  };
  kind what = kind::pay;
  uint64_t op = 0;  // given back with the answer; a late answer's is stale
  std::string pay_id;
  std::string channel_id;
  payment_record record;
  payment_result result;
  std::string from;
  uint32_t limit = 0;
};

using drive_actions = std::vector<drive_action>;

/// The driver's own waits.
struct driver_limits {
  int64_t route_retry_ms = 1000;  // after all channels refused, or a write failed
  int64_t slot_retry_ms = 20;     // after no channel had a free slot
  // How long an action's answer may take. Past it, the tick takes it as
  // failed (a pay request or query: UNKNOWN; a write: not written) and a
  // late answer is ignored. One check a tick for all, instead of a timer a
  // request.
  int64_t store_timeout_ms = 30'000;
  int64_t channel_timeout_ms = 60'000;  // beyond the channel's own timeout
};

class payment_driver {
public:
  payment_driver(std::vector<driver_channel> channels, size_t max_in_memory, rule_timing timing,
                 moment started, uint64_t seed, driver_limits retry = {});

  /// New payments just made durable (resumed: unfinished at a stop; one
  /// with a routed channel may have been sent there, so it is asked first).
  drive_actions admit(std::vector<payment_record> records, bool resumed, moment now);
  /// A payment became final elsewhere (a notification): driven no more.
  void settled(const std::string& pay_id);

  // The answers to actions, each with the action's `op`: an answer whose
  // action timed out already (or that is not for the action in flight) is
  // stale, and ignored.

  /// The store's answer to record_route (`recorded` false: final already).
  drive_actions route_recorded(const std::string& pay_id, uint64_t op, bool recorded, moment now);
  drive_actions route_failed(const std::string& pay_id, uint64_t op, moment now);
  /// The channel's answer to pay (UNKNOWN when there was none).
  drive_actions paid(const std::string& pay_id, uint64_t op, const channel_outcome& outcome,
                     moment now);
  /// The channel's answer to query.
  drive_actions queried(const std::string& pay_id, uint64_t op, const channel_outcome& outcome,
                        moment now);
  /// No answer to query: asked again soon.
  drive_actions query_failed(const std::string& pay_id, uint64_t op, moment now);
  /// The store wrote the result: the payment is done here.
  void result_written(const std::string& pay_id, uint64_t op);
  /// The store could not write it: tried again later.
  drive_actions result_failed(const std::string& pay_id, uint64_t op, moment now);
  /// The reader's answer to read_unfinished (`limit` as asked).
  drive_actions unfinished_read(std::vector<payment_record> records, uint32_t limit, moment now);
  void unfinished_failed();
  /// The operator's switches: each channel's weight and whether it takes
  /// new payments (by id; channels not named keep theirs), and whether
  /// order repair (the queries of unknown outcomes) is paused: a paused
  /// query waits, and is asked once repair resumes.
  void steer(const std::vector<driver_channel>& channels, bool repair_paused);
  /// Time passed: due waits end, room in memory is filled from the store.
  drive_actions tick(moment now);

  size_t driving() const {
    return payments_.size();
  }

private:
  enum class stage { route, query, busy };

  struct driven_payment {
    payment_record record;
    std::set<std::string> excluded;  // channels that said they never took it
    std::string channel;             // where it was sent (durably recorded)
    stage next = stage::route;
    int queries = 0;
    // When its last pay request left (monotonic); for a payment this run
    // has not sent, when the driver started: an earlier run may have sent
    // it just before it stopped.
    int64_t sent_ms = 0;
    int64_t asked_ms = 0;              // when the query in flight left
    bool result_from_channel = false;  // the result being written came from a channel
    // Its route is known to be current: it came with the create that stored
    // it, or was written by this driver. One read back from the store may be
    // stale (a read's snapshot can predate a route or result written since),
    // so its first pay request goes out only after a route write, which the
    // store refuses for a payment that is final.
    bool route_current = true;
    uint64_t op = 0;  // the action in flight (0: none)
    drive_action::kind op_kind = drive_action::kind::pay;
    std::string op_channel;  // the channel whose slot it holds, if any
    std::multimap<int64_t, std::pair<std::string, uint64_t>>::iterator deadline;
  };

  struct channel_slots {
    driver_channel channel;
    size_t in_flight = 0;
  };

  channel_slots* find_channel(const std::string& id);
  static bool has_slot(const channel_slots& slots);
  static bool expired(const payment_record& record, moment now);
  void later(const std::string& pay_id, stage next, int64_t delay_ms, moment now);
  void release(const std::string& channel_id);
  void record_result(const std::string& pay_id, payment_status status,
                     const channel_outcome& outcome, result_source source, moment now,
                     drive_actions& out);
  void apply(const std::string& pay_id, const decision& next, const channel_outcome& outcome,
             result_source source, moment now, drive_actions& out);
  void wait_in_store(const std::string& pay_id);
  /// Done with a payment that is final: out of memory, and out of the
  /// answer of a read in flight.
  void forget(const std::string& pay_id);
  void note_held(driven_payment& payment, const channel_outcome& outcome, drive_actions& out);
  void send_pay(driven_payment& payment, const std::string& channel_id, moment now,
                drive_actions& out);
  void start_payment(driven_payment& payment, const std::string& channel_id, moment now,
                     drive_actions& out);
  void pump(moment now, drive_actions& out);
  void query(driven_payment& payment, moment now, drive_actions& out);
  void load_from_store(drive_actions& out);
  void admit_records(std::vector<payment_record>& records, bool resumed, moment now,
                     drive_actions& out);
  /// Marks `action` as `payment`'s one action in flight, due back by its deadline.
  void begin(driven_payment& payment, drive_action& action, moment now);
  /// The payment whose action `op` this answer is for, no longer in flight;
  /// nullptr if the answer is stale.
  driven_payment* take(const std::string& pay_id, uint64_t op);
  void fail(driven_payment& payment, drive_action::kind what, const std::string& channel_id,
            moment now, drive_actions& out);

  std::vector<channel_slots> channels_;
  size_t max_in_memory_;
  rule_timing timing_;
  driver_limits retry_;
  int64_t started_ms_;
  // Unfinished payments not in memory may exist in the store from this
  // pay_id on (left at a stop, or turned away while memory was full).
  bool more_in_store_ = true;
  std::string in_store_from_;
  bool loading_ = false;
  // Turned away while a read was in flight: that read's snapshot may
  // predate them, so its answer cannot say the store has no more.
  std::optional<std::string> turned_away_while_loading_;
  // Made final while a read was in flight: that read's snapshot may predate
  // the result, and must not bring them back.
  std::set<std::string> finished_while_loading_;
  // By pay_id, hashed: nothing needs them in order, and a look-up should not
  // grow with a backlog (up to max_in_memory after an outage).
  std::unordered_map<std::string, driven_payment> payments_;
  std::deque<std::string> route_queue_;         // waiting for a channel slot
  std::multimap<int64_t, std::string> timers_;  // due (monotonic ms) -> pay_id
  std::multimap<int64_t, std::pair<std::string, uint64_t>> deadlines_;  // -> pay_id, op
  uint64_t next_op_ = 0;
  bool repair_paused_ = false;
  std::mt19937_64 rng_;
};

}  // namespace paybus
