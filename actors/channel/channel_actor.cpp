// A payment channel as the coordinator sees it: an actor holding the circuit
// breaker, the queue limit and one response promise per request, in front of
// a channel_client that signs, sends and verifies off CAF's threads and
// answers each request with a done message.

#include <memory>
#include <unordered_map>

#include <caf/actor_system.hpp>
#include <caf/response_promise.hpp>
#include <caf/send.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/channel/channel_actor.hpp"
#include "actors/channel/channel_client.hpp"
#include "actors/channel/circuit_breaker.hpp"
#include "actors/payment/payment_rules.hpp"
#include "common/clock.hpp"
#include "common/live_switches.hpp"
#include "common/metrics.hpp"

namespace paybus {

namespace {

struct front_state {
  channel_settings_runtime settings;
  metrics* figures = nullptr;
  std::unique_ptr<circuit_breaker> breaker;
  uint64_t next_request = 0;
  switch_view switches;
  bool forced_open = false;  // by the operator: nothing goes out
  // The requests in flight, by id.
  std::unordered_map<uint64_t, caf::typed_response_promise<channel_outcome>> waiting;
  // Last: it stops its thread before the promises above go.
  std::unique_ptr<channel_client> client;
};

using front_pointer = channel_actor::stateful_pointer<front_state>;

/// Whether a request may go out now (a half-open breaker lets one probe).
bool admit(front_pointer self) {
  auto& st = self->state;
  if (st.switches.refresh()) {
    const auto* steered = st.switches.state().find(st.settings.id);
    bool forced = steered != nullptr && steered->breaker_forced;
    if (forced != st.forced_open)
      spdlog::warn("channel {}: circuit {} by the operator", st.settings.id,
                   forced ? "held open" : "handed back to the failure rules");
    st.forced_open = forced;
  }
  if (st.forced_open) {
    st.figures->set_breaker_state(st.settings.id, 3);
    return false;
  }
  if (st.waiting.size() >= st.settings.max_queue)
    return false;
  auto now = monotonic_now_ms();
  bool allowed = st.breaker->allow(now);
  st.figures->set_breaker_state(st.settings.id, static_cast<int>(st.breaker->current(now)));
  return allowed;
}

void observe(front_pointer self, const channel_outcome& outcome) {
  auto& st = self->state;
  st.figures->count_channel_request(st.settings.id, to_string(outcome.status));
  auto now = monotonic_now_ms();
  auto before = st.breaker->current(now);
  bool failed = outcome.status == channel_status::unknown
                || outcome.status == channel_status::unavailable;
  st.breaker->record(!failed, now);
  auto after = st.breaker->current(now);
  if (after == circuit_breaker::state::open && before != circuit_breaker::state::open)
    spdlog::warn("channel {}: circuit open after {} failures ({})", st.settings.id,
                 st.breaker->consecutive_failures(), outcome.reason);
  else if (after == circuit_breaker::state::closed && before != circuit_breaker::state::closed)
    spdlog::info("channel {}: circuit closed", st.settings.id);
  st.figures->set_breaker_state(st.settings.id, static_cast<int>(after));
}

channel_actor::behavior_type front_behavior(front_pointer self, channel_settings_runtime settings,
                                            metrics* figures) {
  auto& st = self->state;
  st.settings = settings;
  st.figures = figures;
  st.breaker = std::make_unique<circuit_breaker>(settings.breaker_failures,
                                                 settings.breaker_open_ms);
  st.switches = switch_view{settings.switches};
  figures->set_breaker_state(settings.id, 0);
  // Outcomes come back as messages to this actor, if it is still there.
  st.client = std::make_unique<channel_client>(
    settings, [address = self->address()](uint64_t id, channel_outcome outcome) {
      if (auto strong = caf::actor_cast<caf::strong_actor_ptr>(address))
        caf::anon_send(caf::actor_cast<channel_actor>(strong), done_atom::value, id,
                       std::move(outcome));
    });
  auto admitted = [=](auto send) -> caf::result<channel_outcome> {
    auto& st = self->state;
    auto id = ++st.next_request;
    auto promise = self->make_response_promise<channel_outcome>();
    st.waiting.emplace(id, promise);
    st.figures->set_channel_in_flight(st.settings.id, static_cast<int64_t>(st.waiting.size()));
    send(*st.client, id);
    return promise;
  };
  return {
    [=](pay_atom, payment_record& record) -> caf::result<channel_outcome> {
      if (!admit(self)) {
        channel_outcome outcome{record.pay_id, self->state.settings.id, channel_status::unavailable,
                                "",
                                self->state.forced_open
                                  ? "circuit held open by the operator: not sent"
                                  : "circuit open or queue full: not sent"};
        self->state.figures->count_channel_request(self->state.settings.id,
                                                   to_string(outcome.status));
        return outcome;
      }
      return admitted(
        [&](channel_client& client, uint64_t id) { client.pay(id, std::move(record)); });
    },
    [=](query_atom, std::string& pay_id) -> caf::result<channel_outcome> {
      if (!admit(self)) {
        channel_outcome outcome{pay_id, self->state.settings.id, channel_status::unknown, "",
                                "circuit open or queue full: not asked"};
        return outcome;
      }
      return admitted([&](channel_client& client, uint64_t id) { client.query(id, pay_id); });
    },
    [=](done_atom, uint64_t id, channel_outcome& outcome) {
      auto& st = self->state;
      auto found = st.waiting.find(id);
      if (found == st.waiting.end())
        return;
      auto promise = std::move(found->second);
      st.waiting.erase(found);
      st.figures->set_channel_in_flight(st.settings.id, static_cast<int64_t>(st.waiting.size()));
      observe(self, outcome);
      promise.deliver(std::move(outcome));
    },
  };
}

}  // namespace

channel_actor spawn_channel(caf::actor_system& system, channel_settings_runtime settings,
                            metrics& figures) {
  return system.spawn(front_behavior, std::move(settings), &figures);
}

}  // namespace paybus
