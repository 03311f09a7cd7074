#include "actors/admin/admin_actor.hpp"

#include <chrono>
#include <deque>
#include <functional>
#include <optional>

#include <caf/actor_system.hpp>
#include <caf/response_promise.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/admin/admin_command.hpp"
#include "actors/cluster/cluster_directory.hpp"
#include "common/clock.hpp"
#include "common/live_switches.hpp"
#include "common/metrics.hpp"
#include "common/pay_id.hpp"
#include "storage/local/record_codec.hpp"

namespace paybus {

namespace {

using json = nlohmann::ordered_json;

struct admin_state {
  admin_settings settings;
  std::deque<std::string> audit;  // the last max_audit_entries, oldest first
  uint64_t audit_number = 0;
};

using admin_pointer = admin_actor::stateful_pointer<admin_state>;
using reply_promise = caf::typed_response_promise<admin_reply>;

constexpr int64_t max_signature_age_ms = 300'000;

admin_reply ok(const json& document) {
  return {false, document.dump()};
}

admin_reply failure(const std::string& code, const std::string& message) {
  return {true, json{{"error", {{"code", code}, {"message", message}}}}.dump()};
}

std::string breaker_word(const channel_switch& channel, int state) {
  if (channel.breaker_forced)
    return "forced_open";
  switch (state) {
    case 1:
      return "open";
    case 2:
      return "half_open";
    default:
      return "closed";
  }
}

json channel_json(const channel_switch& channel, const metrics& figures) {
  auto seen = figures.channel(channel.id);
  uint64_t requests = 0;
  for (const auto& [outcome, count] : seen.requests)
    requests += count;
  auto count_of = [&](const char* outcome) -> uint64_t {
    auto found = seen.requests.find(outcome);
    return found == seen.requests.end() ? 0 : found->second;
  };
  return {{"id", channel.id},
          {"weight", channel.weight},
          {"enabled", channel.enabled},
          {"breaker", breaker_word(channel, seen.breaker_state)},
          {"in_flight", seen.in_flight},
          {"requests", requests},
          {"succeeded", count_of("SUCCEEDED")},
          {"failed", count_of("FAILED")},
          {"unknown", count_of("UNKNOWN")}};
}

json switches_json(const switch_state& state) {
  json switches = json::object();
  for (auto which : all_degrade_switches)
    switches[to_string(which)] = state.is_paused(which);
  return {{"switches", switches}};
}

std::string joined(const std::vector<std::string>& words) {
  std::string line;
  for (const auto& word : words)
    line += (line.empty() ? "" : " ") + word;
  return line;
}

/// Writes the audit entry (and the switches, when `next` is set), then
/// makes `next` the live switches and answers with `answer()`.
void persist(admin_pointer self, reply_promise promise, const admin_request& request,
             const std::string& who, std::optional<switch_state> next, std::string result,
             std::function<admin_reply()> answer) {
  auto& st = self->state;
  auto at = unix_now_ms();
  json entry = {{"at", format_rfc3339_ms(at)},
                {"who", who},
                {"command", joined(request.words)},
                {"result", result}};
  auto key = admin_audit_key(at, ++st.audit_number);
  auto text = entry.dump();
  auto switches = next ? encode_switches(*next) : std::string{};
  self
    ->request(st.settings.writer, std::chrono::milliseconds{st.settings.store_timeout_ms},
              admin_atom::value, switches, key, text)
    .then(
      [=](bool written) mutable {
        auto& st = self->state;
        if (!written) {
          promise.deliver(
            failure("store_unavailable", "the local store cannot write: nothing changed"));
          return;
        }
        if (next) {
          st.settings.switches->replace(*next);
          show_switches(*st.settings.figures, *next);
        }
        st.audit.push_back(text);
        while (st.audit.size() > static_cast<size_t>(max_audit_entries))
          st.audit.pop_front();
        spdlog::warn("admin: {} by {}: {}", joined(request.words), who, result);
        promise.deliver(answer());
      },
      [=](caf::error& problem) mutable {
        promise.deliver(failure("store_unavailable", "the local store did not write the change ("
                                                       + caf::to_string(problem)
                                                       + "): nothing changed"));
      });
}

/// `status`, with the unfinished payments the reader counted.
json status_json(admin_pointer self, int64_t dispatch_backlog) {
  auto& st = self->state;
  const auto& figures = *st.settings.figures;
  auto state = st.settings.switches->snapshot();
  json degraded = json::array();
  for (auto which : all_degrade_switches)
    if (state.is_paused(which))
      degraded.push_back(to_string(which));
  return {{"instance_id", st.settings.instance_id},
          {"version", st.settings.version},
          {"uptime_seconds", (unix_now_ms() - st.settings.started_unix_ms) / 1000},
          {"accepting", figures.store_up.load() == 1},
          {"store_up", figures.store_up.load() == 1},
          {"db_up", figures.db_up.load() == 1},
          {"db_backlog", figures.db_backlog.load()},
          {"notify_backlog", figures.notify_backlog.load()},
          {"dispatch_backlog", dispatch_backlog},
          {"degraded", degraded}};
}

void handle(admin_pointer self, reply_promise promise, const admin_request& request,
            const std::string& who) {
  auto& st = self->state;
  using kind = admin_command::kind;
  std::string error;
  auto parsed = parse_admin_command(request.words, error);
  if (!parsed) {
    promise.deliver(failure("bad_command", error));
    return;
  }
  const auto& command = *parsed;
  auto state = st.settings.switches->snapshot();
  auto timeout = std::chrono::milliseconds{st.settings.store_timeout_ms};
  auto store_failed = [=](caf::error& problem) mutable {
    promise.deliver(
      failure("store_unavailable", "the local store cannot be read: " + caf::to_string(problem)));
  };
  channel_switch* channel = nullptr;
  if (!command.channel_id.empty()) {
    channel = state.find(command.channel_id);
    if (channel == nullptr) {
      promise.deliver(failure("unknown_channel", "no channel '" + command.channel_id + "'"));
      return;
    }
  }
  switch (command.what) {
    case kind::help: {
      promise.deliver(ok({{"commands", admin_command_help()}}));
      return;
    }
    case kind::status: {
      // The dispatch backlog is counted by the reader.
      self->request(st.settings.reader, timeout, backlog_atom::value)
        .then(
          [=](const std::string& backlog) mutable {
            auto dispatch = json::parse(backlog).value("dispatch", int64_t{0});
            promise.deliver(ok(status_json(self, dispatch)));
          },
          store_failed);
      return;
    }
    case kind::channels: {
      json channels = json::array();
      for (const auto& each : state.channels)
        channels.push_back(channel_json(each, *st.settings.figures));
      promise.deliver(ok({{"channels", channels}}));
      return;
    }
    case kind::channel_weight:
    case kind::channel_enable:
    case kind::channel_breaker: {
      if (command.what == kind::channel_weight)
        channel->weight = command.number;
      else if (command.what == kind::channel_enable)
        channel->enabled = command.on;
      else
        channel->breaker_forced = command.on;
      channel->changed = true;
      auto changed = *channel;
      auto* figures = st.settings.figures;
      persist(self, promise, request, who, state, "ok",
              [changed, figures] { return ok(channel_json(changed, *figures)); });
      return;
    }
    case kind::degrade_list: {
      promise.deliver(ok(switches_json(state)));
      return;
    }
    case kind::degrade_set: {
      state.paused[static_cast<size_t>(command.which)] = command.on;
      persist(self, promise, request, who, state, "ok",
              [state] { return ok(switches_json(state)); });
      return;
    }
    case kind::backlog: {
      self->request(st.settings.reader, timeout, backlog_atom::value)
        .then(
          [=](const std::string& backlog) mutable {
            promise.deliver(admin_reply{false, backlog});
          },
          store_failed);
      return;
    }
    case kind::payment: {
      auto parts = parse_pay_id(command.pay_id);
      if (st.settings.cluster != nullptr && parts
          && !st.settings.cluster->serves(parts->instance_id)) {
        // Another instance's payment: answered as its owner answers.
        auto instance = parts->instance_id;
        auto owner = st.settings.cluster->owner(instance);
        auto unavailable = failure("owner_unavailable",
                                   "instance " + std::to_string(instance)
                                     + " owns this payment and cannot be reached now");
        if (!owner) {
          promise.deliver(unavailable);
          return;
        }
        self->request(owner, timeout, inspect_atom::value, command.pay_id)
          .then(
            [=](const std::string& found) mutable {
              if (found.empty())
                promise.deliver(failure("not_found", "no payment " + command.pay_id
                                                       + " in the store of instance "
                                                       + std::to_string(instance)));
              else
                promise.deliver(admin_reply{false, found});
            },
            [=](const caf::error&) mutable { promise.deliver(unavailable); });
        return;
      }
      auto reader = st.settings.reader;
      if (st.settings.cluster != nullptr && parts)
        if (auto adopted = st.settings.cluster->adopted(parts->instance_id))
          reader = adopted->reader;
      self->request(reader, timeout, inspect_atom::value, command.pay_id)
        .then(
          [=](const std::string& found) mutable {
            if (found.empty())
              promise.deliver(
                failure("not_found", "no payment " + command.pay_id + " in the local store"));
            else
              promise.deliver(admin_reply{false, found});
          },
          store_failed);
      return;
    }
    case kind::webhook_resend: {
      self->request(st.settings.writer, timeout, resend_atom::value, command.pay_id)
        .then(
          [=](bool queued, const std::string& detail) mutable {
            if (!queued) {
              promise.deliver(failure("not_resent", detail));
              return;
            }
            json answer = {{"pay_id", command.pay_id}, {"event_id", detail}, {"queued", true}};
            persist(self, promise, request, who, std::nullopt, "queued " + detail,
                    [answer] { return ok(answer); });
          },
          store_failed);
      return;
    }
    case kind::reconcile: {
      auto found = st.settings.reconcilers.find(command.channel_id);
      if (found == st.settings.reconcilers.end()) {
        promise.deliver(failure("unknown_channel", "no channel '" + command.channel_id + "'"));
        return;
      }
      // A run reads a whole day: it may take minutes.
      self
        ->request(found->second, std::chrono::seconds{6 * 3600}, reconcile_atom::value,
                  command.date, command.file, true)
        .then(
          [=](bool done, const std::string& detail) mutable {
            if (!done) {
              persist(self, promise, request, who, std::nullopt, "failed: " + detail,
                      [detail] { return failure("reconciliation_failed", detail); });
              return;
            }
            auto summary = json::parse(detail, nullptr, false);
            persist(self, promise, request, who, std::nullopt, "ok",
                    [summary] { return ok(summary); });
          },
          [=](caf::error& problem) mutable {
            promise.deliver(failure("reconciliation_failed", caf::to_string(problem)));
          });
      return;
    }
    case kind::cluster_adopt: {
      if (!st.settings.cluster_handle) {
        promise.deliver(
          failure("not_clustered", "this instance is alone: cluster.listen is not set"));
        return;
      }
      // Opening a store and recording the move take a while.
      self
        ->request(st.settings.cluster_handle, std::chrono::minutes{2}, adopt_atom::value,
                  static_cast<int32_t>(command.number), command.file)
        .then(
          [=](bool adopted, const std::string& detail) mutable {
            if (!adopted) {
              persist(self, promise, request, who, std::nullopt, "refused: " + detail,
                      [detail] { return failure("not_adopted", detail); });
              return;
            }
            auto status = json::parse(detail, nullptr, false);
            persist(self, promise, request, who, std::nullopt, "ok",
                    [status] { return ok(status); });
          },
          [=](const caf::error& problem) mutable {
            promise.deliver(failure("cluster_unavailable", caf::to_string(problem)));
          });
      return;
    }
    case kind::cluster_status:
    case kind::cluster_form: {
      if (!st.settings.cluster_handle) {
        promise.deliver(
          failure("not_clustered", "this instance is alone: cluster.listen is not set"));
        return;
      }
      if (command.what == kind::cluster_status) {
        self->request(st.settings.cluster_handle, timeout, status_atom::value)
          .then(
            [=](const std::string& status) mutable {
              promise.deliver(admin_reply{false, status});
            },
            [=](const caf::error& problem) mutable {
              promise.deliver(failure("cluster_unavailable", caf::to_string(problem)));
            });
        return;
      }
      self->request(st.settings.cluster_handle, timeout, form_atom::value)
        .then(
          [=](bool formed, const std::string& detail) mutable {
            if (!formed) {
              persist(self, promise, request, who, std::nullopt, "refused: " + detail,
                      [detail] { return failure("not_formed", detail); });
              return;
            }
            auto status = json::parse(detail, nullptr, false);
            if (status.is_discarded())
              status = json{{"formed", true}, {"message", detail}};
            persist(self, promise, request, who, std::nullopt, "ok",
                    [status] { return ok(status); });
          },
          [=](const caf::error& problem) mutable {
            promise.deliver(failure("cluster_unavailable", caf::to_string(problem)));
          });
      return;
    }
    case kind::audit: {
      json entries = json::array();
      auto count = std::min<size_t>(st.audit.size(), static_cast<size_t>(command.number));
      for (auto at = st.audit.end() - static_cast<std::ptrdiff_t>(count); at != st.audit.end();
           ++at)
        entries.push_back(json::parse(*at, nullptr, false));
      promise.deliver(ok({{"entries", entries}}));
      return;
    }
    case kind::log_level: {
      state.log_level = command.level;
      auto level = command.level;
      persist(self, promise, request, who, state, "ok", [level] {
        spdlog::set_level(spdlog::level::from_str(level));
        return ok({{"level", level}});
      });
      return;
    }
  }
}

admin_actor::behavior_type admin_behavior(admin_pointer self, admin_settings settings) {
  auto& st = self->state;
  for (auto& entry : settings.audit)
    st.audit.push_back(std::move(entry));
  settings.audit.clear();
  st.settings = std::move(settings);
  return {
    [=](admin_request& request) -> caf::result<admin_reply> {
      // Who: without TLS every console is on this machine ("local"); with
      // it, the subject of the certificate that signed the command.
      std::string who = "local";
      if (const auto& verifier = self->state.settings.verifier) {
        std::string why;
        auto age_ms = unix_now_ms() - request.at_ms;
        if (age_ms < -max_signature_age_ms || age_ms > max_signature_age_ms)
          why = "its time is more than 5 minutes from the bus's";
        else
          verifier->verify(request.certificate,
                           crypto::admin_signed_text(request.at_ms, request.words),
                           request.signature, who, why);
        if (!why.empty()) {
          spdlog::warn("admin console refused a command: {}", why);
          return failure("unauthenticated", "refused: " + why);
        }
      }
      auto promise = self->make_response_promise<admin_reply>();
      handle(self, promise, request, who);
      return promise;
    },
  };
}

}  // namespace

void show_switches(metrics& figures, const switch_state& state) {
  for (const auto& channel : state.channels) {
    figures.set_channel_switch(channel.id, channel.weight, channel.enabled);
    // Held open, nothing reaches the channel actor to say so; handed back,
    // the breaker's own state is shown again from its next request.
    if (channel.breaker_forced)
      figures.set_breaker_state(channel.id, 3);
    else if (figures.channel(channel.id).breaker_state == 3)
      figures.set_breaker_state(channel.id, 0);
  }
  for (auto which : all_degrade_switches)
    figures.set_degraded(to_string(which), state.is_paused(which));
}

std::string admin_audit_key(int64_t at_ms, uint64_t number) {
  return "audit/" + codec::encode_u64_be(static_cast<uint64_t>(at_ms))
         + codec::encode_u64_be(number);
}

admin_actor spawn_admin(caf::actor_system& system, admin_settings settings) {
  return system.spawn(admin_behavior, std::move(settings));
}

}  // namespace paybus
