#include "actors/cluster/cluster_actor.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include <caf/actor_system.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/openssl/manager.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/cluster/cluster_directory.hpp"
#include "actors/cluster/slot_table.hpp"
#include "actors/payment/settlement.hpp"
#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "common/pay_id.hpp"

namespace paybus {

namespace {

/// One address this instance knows a peer at.
struct link {
  enum class phase { idle, connecting, up } state = phase::idle;
  int32_t instance = 0;          // known once the peer said hello
  caf::actor_addr handle;        // while up
  std::vector<int32_t> adopted;  // numbers the peer said it adopted
  int64_t next_try_ms = 0;
  bool reported_unreachable = false;
};

struct cluster_state {
  cluster_settings settings;
  std::map<std::string, link> links;    // by address
  std::set<std::string> own_addresses;  // addresses that turned out to be this instance
  caf::actor registry;
  std::optional<order_shard> shard;
  bool registry_reading = false;
  int64_t next_registry_ms = 0;
};

using cluster_pointer = cluster_actor::stateful_pointer<cluster_state>;

constexpr auto tick_every = std::chrono::milliseconds{250};

bool split_address(const std::string& address, std::string& host, uint16_t& port) {
  auto colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size())
    return false;
  unsigned long number = 0;
  for (size_t i = colon + 1; i < address.size(); ++i) {
    if (address[i] < '0' || address[i] > '9')
      return false;
    number = number * 10 + static_cast<unsigned long>(address[i] - '0');
    if (number > 65535)
      return false;
  }
  host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  port = static_cast<uint16_t>(number);
  return port != 0;
}

void know(cluster_pointer self, const std::string& address) {
  auto& st = self->state;
  if (address.empty() || address == st.settings.address || st.own_addresses.count(address))
    return;
  st.links.try_emplace(address);
}

/// The registry is read on a thread of its own: libpq blocks.
caf::behavior registry_reader(caf::event_based_actor* self, cluster_settings settings) {
  auto database = std::make_shared<pg_database>(settings.database);
  return {
    [=](registry_atom) -> caf::result<std::vector<std::string>, std::vector<std::string>> {
      std::string error;
      auto rows = database->cluster_members(settings.instance_id, settings.fingerprint,
                                            settings.address, error);
      auto slots = rows ? database->slot_rows(error) : std::nullopt;
      if (!rows || !slots) {
        database->disconnect();
        spdlog::debug("cluster: cannot read paybus_instances and paybus_slots: {}", error);
        return caf::make_error(errc::owner_unavailable);
      }
      return {std::move(*rows), std::move(*slots)};
    },
    [=](adopt_atom, int32_t instance) -> caf::result<int64_t> {
      std::string error;
      auto moved = database->adopt_slots(instance, settings.instance_id, settings.address, error);
      if (!moved) {
        database->disconnect();
        spdlog::warn("cluster: cannot record the adoption of instance {}: {}", instance, error);
        return caf::make_error(errc::owner_unavailable);
      }
      return *moved;
    },
    [=](form_atom, const std::vector<int32_t>& instances) -> caf::result<bool> {
      std::string error;
      auto formed = database->form_slots(instances, slot_count, error);
      if (!formed) {
        database->disconnect();
        spdlog::warn("cluster: cannot form the slot table: {}", error);
        return caf::make_error(errc::owner_unavailable);
      }
      return *formed;
    }};
}

/// A newer slot table (read from the database, or pushed by a peer):
/// taken, kept in the local store for a start while the database is down,
/// and pushed to the peers up (each takes it only if it is newer for it).
void take_table(cluster_pointer self, slot_table table) {
  auto& st = self->state;
  auto epoch = table.epoch;
  auto mine = table.counts()[st.settings.instance_id];
  auto encoded = encode_slots(table);
  if (!st.settings.slots->offer(std::move(table)))
    return;
  st.settings.figures->set_cluster_slots(epoch, mine);
  spdlog::info("cluster: slot table at epoch {}: this instance owns {} of {} slots", epoch, mine,
               slot_count);
  self
    ->request(st.settings.writer, std::chrono::seconds{30}, admin_atom::value, std::string{},
              std::string{"slots"}, encoded)
    .then([](bool) {}, [](caf::error&) {});
  for (const auto& member : st.settings.directory->members())
    if (member.up)
      if (auto peer = st.settings.directory->owner(member.instance))
        self->send(peer, slots_atom::value, encoded);
}

/// The table held is current as of `epoch` (the database's, or a peer's):
/// confirmed unless it is behind it.
void confirm(cluster_pointer self, int64_t epoch) {
  auto& slots = *self->state.settings.slots;
  if (slots.confirmed() || slots.version() == 0 || slots.get().epoch < epoch)
    return;
  slots.confirm();
  spdlog::info("cluster: slot table at epoch {} confirmed: this instance decides the orders of "
               "its slots",
               slots.get().epoch);
}

void take_slots(cluster_pointer self, const std::vector<std::string>& rows) {
  if (rows.empty())
    return;  // not formed yet
  std::string error;
  auto table = slots_from_rows(rows, error);
  if (!table) {
    spdlog::error("cluster: {}; the table held is kept", error);
    return;
  }
  auto epoch = table->epoch;
  take_table(self, std::move(*table));
  confirm(self, epoch);
}

std::string status_json(cluster_pointer self) {
  auto& st = self->state;
  auto table = st.settings.slots->get();
  nlohmann::json slots = nlohmann::json::object();
  for (const auto& [instance, count] : table.counts())
    slots[std::to_string(instance)] = count;
  nlohmann::json members = nlohmann::json::array();
  members.push_back({{"instance_id", st.settings.instance_id},
                     {"address", st.settings.address},
                     {"up", true},
                     {"self", true},
                     {"slots", table.known() ? table.counts()[st.settings.instance_id] : 0}});
  for (const auto& member : st.settings.directory->members())
    members.push_back({{"instance_id", member.instance},
                       {"address", member.address},
                       {"up", member.up},
                       {"self", false},
                       {"slots", table.known() ? table.counts()[member.instance] : 0}});
  nlohmann::json adopted = nlohmann::json::array();
  for (const auto& store : st.settings.directory->adopted_all())
    adopted.push_back({{"instance_id", store.instance},
                       {"store_dir", store.store_dir},
                       {"slots", table.known() ? table.counts()[store.instance] : 0}});
  return nlohmann::ordered_json{{"instance_id", st.settings.instance_id},
                                {"formed", table.known()},
                                {"epoch", table.epoch},
                                {"slot_count", slot_count},
                                {"slots_by_instance", slots},
                                {"members", members},
                                {"adopted", adopted}}
    .dump();
}

caf::result<bool, std::string> form(cluster_pointer self) {
  auto& st = self->state;
  if (st.settings.slots->version() != 0)
    return {false, "the cluster is formed already (epoch "
                     + std::to_string(st.settings.slots->get().epoch)
                     + "): the slots stay with their owners"};
  std::vector<int32_t> instances{st.settings.instance_id};
  for (const auto& member : st.settings.directory->members())
    if (member.up)
      instances.push_back(member.instance);
  std::sort(instances.begin(), instances.end());
  auto promise = self->make_response_promise<bool, std::string>();
  auto timeout = std::chrono::milliseconds{st.settings.database.connect_timeout_ms
                                           + 4 * st.settings.database.statement_timeout_ms + 1000};
  self->request(st.registry, timeout, form_atom::value, instances)
    .then(
      [=](bool formed) mutable {
        self->request(self->state.registry, timeout, registry_atom::value)
          .then(
            [=](std::vector<std::string>&, std::vector<std::string>& slot_rows) mutable {
              take_slots(self, slot_rows);
              if (formed)
                spdlog::info("cluster: formed: the slots spread over instances {}",
                             fmt::join(instances, ", "));
              if (formed)
                promise.deliver(true, status_json(self));
              else
                promise.deliver(false, std::string{"the cluster was formed already (by another "
                                                   "instance): 'cluster status' shows it"});
            },
            [=](caf::error&) mutable {
              promise.deliver(formed, std::string{formed ? "formed; the table could not be read "
                                                           "back yet"
                                                         : "the cluster was formed already"});
            });
      },
      [=](caf::error&) mutable {
        promise.deliver(false, std::string{"the database cannot be reached: forming writes "
                                           "paybus_slots"});
      });
  return promise;
}

void read_registry(cluster_pointer self) {
  auto& st = self->state;
  if (st.registry_reading)
    return;
  st.registry_reading = true;
  st.next_registry_ms = monotonic_now_ms() + st.settings.registry_every_ms;
  auto timeout = std::chrono::milliseconds{st.settings.database.connect_timeout_ms
                                           + 2 * st.settings.database.statement_timeout_ms + 1000};
  self->request(st.registry, timeout, registry_atom::value)
    .then(
      [=](std::vector<std::string>& rows, std::vector<std::string>& slot_rows) {
        self->state.registry_reading = false;
        take_slots(self, slot_rows);
        for (const auto& row : rows) {
          int32_t instance = 0;
          std::string address;
          if (parse_member_line(row, instance, address)
              && instance != self->state.settings.instance_id)
            know(self, address);
        }
      },
      [=](caf::error&) { self->state.registry_reading = false; });
}

/// The numbers this instance adopted, comma-separated.
std::string served_list(cluster_pointer self) {
  std::string out;
  for (const auto& store : self->state.settings.directory->adopted_all())
    out += (out.empty() ? "" : ",") + std::to_string(store.instance);
  return out;
}

void lost(cluster_pointer self, const std::string& address, const std::string& why) {
  auto& st = self->state;
  auto found = st.links.find(address);
  if (found == st.links.end())
    return;
  auto& peer = found->second;
  bool was_up = peer.state == link::phase::up;
  peer.state = link::phase::idle;
  peer.next_try_ms = monotonic_now_ms() + st.settings.retry_ms;
  if (was_up) {
    st.settings.directory->peer_down(peer.instance);
    for (auto number : peer.adopted)
      st.settings.directory->peer_down(number);
    st.settings.figures->set_cluster_peer_up(peer.instance, false);
    spdlog::warn("cluster: instance {} at {} is down ({}): requests it owns get "
                 "503 owner_unavailable until it is back or adopted",
                 peer.instance, address, why);
  } else if (!peer.reported_unreachable) {
    spdlog::info("cluster: no peer reached at {} yet ({})", address, why);
    peer.reported_unreachable = true;
  }
  // The seed's "ask the registry again on error": the peer may have moved.
  read_registry(self);
}

/// A peer reached (this side dialled it, or it dialled this side and said
/// hello): routed to from now on, monitored, told what it may have missed.
void link_up(cluster_pointer self, const std::string& address, int32_t instance,
             cluster_actor peer) {
  auto& st = self->state;
  auto& known = st.links[address];
  if (known.state == link::phase::up && known.handle == peer.address())
    return;
  known.state = link::phase::up;
  known.instance = instance;
  known.reported_unreachable = false;
  known.handle = peer.address();
  self->monitor(peer);
  st.settings.directory->peer_up(instance, address, peer);
  st.settings.figures->set_cluster_peer_up(instance, true);
  spdlog::info("cluster: instance {} at {} is up", instance, address);
  // One that missed a change (down, or its database unreachable) catches up.
  if (st.settings.slots->version() != 0)
    self->send(peer, slots_atom::value, encode_slots(st.settings.slots->get()));
  if (auto served = served_list(self); !served.empty())
    self->send(peer, serves_atom::value, served);
}

/// One connection a pair: the instance with the lower address dials, the
/// other waits for its hello (two connections between one pair of nodes
/// make CAF's middleman drop one, and the link flaps).
bool dials(cluster_pointer self, const std::string& address) {
  return self->state.settings.address < address;
}

void connect(cluster_pointer self, const std::string& address) {
  auto& st = self->state;
  std::string host;
  uint16_t port = 0;
  if (!split_address(address, host, port)) {
    spdlog::warn("cluster: '{}' is not HOST:PORT; left out", address);
    st.links.erase(address);
    return;
  }
  st.links[address].state = link::phase::connecting;
  auto middleman = st.settings.tls ? self->system().openssl_manager().actor_handle()
                                   : self->system().middleman().actor_handle();
  auto timeout = std::chrono::milliseconds{st.settings.connect_timeout_ms};
  self->request(middleman, timeout, caf::connect_atom::value, host, port)
    .then(
      [=](const caf::node_id&, caf::strong_actor_ptr& found, const std::set<std::string>&) {
        auto peer = caf::actor_cast<cluster_actor>(std::move(found));
        if (!peer)
          return lost(self, address, "nothing is published there");
        auto& st = self->state;
        self
          ->request(peer, timeout, hello_atom::value, st.settings.instance_id, st.settings.address)
          .then(
            [=](int32_t instance) {
              if (instance == self->state.settings.instance_id) {
                // An address of this very instance (a seed list shared by all).
                self->state.own_addresses.insert(address);
                self->state.links.erase(address);
                return;
              }
              link_up(self, address, instance, peer);
            },
            [=](caf::error& error) { lost(self, address, self->system().render(error)); });
      },
      [=](caf::error& error) { lost(self, address, self->system().render(error)); });
}

void tick(cluster_pointer self) {
  auto& st = self->state;
  auto now = monotonic_now_ms();
  if (now >= st.next_registry_ms)
    read_registry(self);
  std::vector<std::string> due;
  for (auto& [address, peer] : st.links)
    if (peer.state == link::phase::idle && now >= peer.next_try_ms && dials(self, address))
      due.push_back(address);
  for (const auto& address : due)
    connect(self, address);
}

reader_actor reader_of(cluster_pointer self, const std::string& pay_id) {
  auto adopted = self->state.settings.directory->adopted_for(pay_id);
  return adopted ? adopted->reader : self->state.settings.reader;
}

store_actor writer_of(cluster_pointer self, const std::string& pay_id) {
  auto adopted = self->state.settings.directory->adopted_for(pay_id);
  return adopted ? adopted->writer : self->state.settings.writer;
}

/// An error for a request about an instance this process does not serve.
bool ours(cluster_pointer self, const std::string& pay_id) {
  auto parts = parse_pay_id(pay_id);
  return parts && self->state.settings.directory->serves(parts->instance_id);
}

caf::result<order_stored> create_for_peer(cluster_pointer self, payment_order order,
                                          int64_t epoch) {
  auto& st = self->state;
  auto table = st.settings.slots->get();
  auto slot = slot_of(order.merchant_id, order.merchant_order_no);
  if (!table.known() || table.owner(slot) != st.settings.instance_id || epoch > table.epoch
      || !st.settings.slots->confirmed()) {
    // The peer's table says otherwise: one of the two is behind. Never decide
    // a slot this table does not give to this instance; read it again.
    if (epoch > table.epoch)
      read_registry(self);
    return caf::make_error(errc::owner_unavailable);
  }
  bool failed = false;
  if (auto found = st.settings.directory->find_adopted(order.merchant_id, order.merchant_order_no,
                                                       failed))
    return order_stored{false, decide_admission(false, found->order, order), std::move(*found)};
  if (failed)
    return caf::make_error(errc::store_unavailable);
  auto record = st.shard->issue(order, unix_now_ms());
  auto promise = self->make_response_promise<order_stored>();
  self
    ->request(st.settings.writer, std::chrono::seconds{30}, create_atom::value,
              std::vector<payment_record>{std::move(record)}, std::vector<nonce_accepted>{})
    .then(
      [=](std::vector<order_stored>& stored) mutable {
        if (stored.size() != 1) {
          promise.deliver(caf::make_error(errc::store_unavailable));
          return;
        }
        if (stored.front().created && stored.front().record.status == payment_status::processing)
          self->send(self->state.settings.coordinator,
                     std::vector<payment_record>{stored.front().record});
        promise.deliver(std::move(stored.front()));
      },
      [=](caf::error& error) mutable { promise.deliver(std::move(error)); });
  return promise;
}

/// The adopted stores, kept in this instance's local store: a restart
/// opens them again before it serves anything.
void remember_adopted(cluster_pointer self) {
  std::vector<std::pair<int32_t, std::string>> list;
  for (const auto& store : self->state.settings.directory->adopted_all())
    list.emplace_back(store.instance, store.store_dir);
  self
    ->request(self->state.settings.writer, std::chrono::seconds{30}, admin_atom::value,
              std::string{}, std::string{"adopted"}, encode_adopted(list))
    .then([](bool) {}, [](caf::error&) {});
}

caf::result<bool, std::string> adopt(cluster_pointer self, int32_t instance,
                                     const std::string& dir) {
  auto& st = self->state;
  auto refuse = [](std::string why) -> caf::result<bool, std::string> {
    return {false, std::move(why)};
  };
  if (!st.settings.open_store || !st.settings.serve_store)
    return refuse("this instance cannot adopt");
  if (instance == st.settings.instance_id)
    return refuse("an instance cannot adopt itself");
  if (st.settings.directory->adopted(instance))
    return refuse("instance " + std::to_string(instance) + " is adopted here already");
  if (st.settings.slots->version() == 0)
    return refuse("the cluster is not formed: 'cluster form' first");
  for (const auto& member : st.settings.directory->members())
    if (member.instance == instance && member.up)
      return refuse("instance " + std::to_string(instance) + " at " + member.address
                    + " still answers heartbeats: stop it for good first");
  std::string error;
  auto store = st.settings.open_store(instance, dir, error);
  if (!store)
    return refuse(error);
  auto promise = self->make_response_promise<bool, std::string>();
  auto timeout = std::chrono::milliseconds{st.settings.database.connect_timeout_ms
                                           + 4 * st.settings.database.statement_timeout_ms + 1000};
  // The fence first: its slots move to this instance at a new epoch and its
  // registry row names this instance, in one statement. Only then does
  // anything of its store run here.
  self->request(st.registry, timeout, adopt_atom::value, instance)
    .then(
      [=](int64_t moved) mutable {
        auto& st = self->state;
        st.settings.directory->adopt(st.settings.serve_store(instance, dir, store));
        remember_adopted(self);
        spdlog::warn("cluster: adopted instance {} (store {}): its {} slots, payments, "
                     "notifications, database rows and webhooks are served here now",
                     instance, dir, moved);
        for (const auto& member : st.settings.directory->members())
          if (member.up)
            if (auto peer = st.settings.directory->owner(member.instance))
              self->send(peer, serves_atom::value, served_list(self));
        self->request(st.registry, timeout, registry_atom::value)
          .then(
            [=](std::vector<std::string>&, std::vector<std::string>& slot_rows) mutable {
              take_slots(self, slot_rows);
              promise.deliver(true, status_json(self));
            },
            [=](caf::error&) mutable { promise.deliver(true, status_json(self)); });
      },
      [=](caf::error&) mutable {
        promise.deliver(false, std::string{"the database cannot be reached: adoption moves the "
                                           "slots in paybus_slots first"});
      });
  return promise;
}

cluster_actor::behavior_type cluster_behavior(cluster_pointer self, cluster_settings settings) {
  self->state.settings = std::move(settings);
  auto& st = self->state;
  st.registry = self->system().spawn<caf::detached>(registry_reader, st.settings);
  st.shard.emplace(st.settings.shard);
  self->link_to(st.registry);
  for (const auto& seed : st.settings.seeds)
    know(self, seed);
  self->set_down_handler([=](caf::down_msg& down) {
    for (auto& [address, peer] : self->state.links)
      if (peer.state == link::phase::up && peer.handle == down.source) {
        lost(self, address, "connection lost");
        return;
      }
  });
  self->send(self, tick_atom::value);
  return {
    [=](hello_atom, int32_t instance, const std::string& address) -> int32_t {
      // A peer dialled this one (it has the lower address): the link is up
      // once this answer is on its way; its proxy is the peer's handle.
      auto& st = self->state;
      if (instance != st.settings.instance_id && !address.empty()
          && address != st.settings.address) {
        auto peer = caf::actor_cast<cluster_actor>(self->current_sender());
        know(self, address);
        if (peer && !dials(self, address))
          link_up(self, address, instance, peer);
        else if (auto found = st.links.find(address);
                 found != st.links.end() && found->second.state == link::phase::idle)
          found->second.next_try_ms = 0;
      }
      return st.settings.instance_id;
    },
    [=](get_atom, const std::string& pay_id) -> caf::result<payment_lookup> {
      if (!ours(self, pay_id))
        return caf::make_error(errc::owner_unavailable);
      return self->delegate(reader_of(self, pay_id), get_atom::value, pay_id);
    },
    [=](find_atom, const std::string& merchant_id,
        const std::string& order_no) -> caf::delegated<payment_lookup> {
      return self->delegate(self->state.settings.reader, find_atom::value, merchant_id, order_no);
    },
    [=](result_atom, payment_result& result) -> caf::result<result_recorded> {
      if (!ours(self, result.pay_id))
        return caf::make_error(errc::owner_unavailable);
      auto writer = writer_of(self, result.pay_id);
      return self->delegate(writer, result_atom::value, std::move(result));
    },
    [=](inspect_atom, const std::string& pay_id) -> caf::result<std::string> {
      if (!ours(self, pay_id))
        return caf::make_error(errc::owner_unavailable);
      return self->delegate(reader_of(self, pay_id), inspect_atom::value, pay_id);
    },
    [=](create_atom, payment_order& order, int64_t epoch) -> caf::result<order_stored> {
      return create_for_peer(self, std::move(order), epoch);
    },
    [=](status_atom) -> std::string { return status_json(self); },
    [=](adopt_atom, int32_t instance, const std::string& dir) -> caf::result<bool, std::string> {
      return adopt(self, instance, dir);
    },
    [=](serves_atom, const std::string& list) {
      // From the peer's own cluster actor: its numbers are reached through it.
      auto sender = caf::actor_cast<cluster_actor>(self->current_sender());
      if (!sender)
        return;
      auto& st = self->state;
      // A peer that adopted this instance's number while it was down serves
      // its payments and slots now: this process must stop, whether or not
      // its own link to that peer is up yet.
      auto own = "," + list + ",";
      if (own.find("," + std::to_string(st.settings.instance_id) + ",") != std::string::npos) {
        auto why = "instance " + std::to_string(st.settings.instance_id)
                   + " was adopted by another instance (cluster adopt), which serves its "
                     "payments and slots now; stopping";
        spdlog::critical("{}", why);
        if (st.settings.fenced)
          st.settings.fenced(why);
        return;
      }
      for (auto& [address, peer] : st.links) {
        if (peer.state != link::phase::up || peer.handle != sender.address())
          continue;
        size_t at = 0;
        while (at < list.size()) {
          auto comma = list.find(',', at);
          auto word = list.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
          at = comma == std::string::npos ? list.size() : comma + 1;
          auto number = std::atoi(word.c_str());
          if (number <= 0 || number == st.settings.instance_id)
            continue;
          if (std::find(peer.adopted.begin(), peer.adopted.end(), number) == peer.adopted.end())
            peer.adopted.push_back(number);
          st.settings.directory->peer_up(number, address, sender);
          spdlog::info("cluster: instance {} is served by instance {} at {} (adopted)", number,
                       peer.instance, address);
        }
        return;
      }
    },
    [=](form_atom) -> caf::result<bool, std::string> { return form(self); },
    [=](slots_atom, const std::string& encoded) {
      std::string error;
      auto table = decode_slots(encoded, error);
      if (!table)
        return spdlog::warn("cluster: a peer sent a slot table that is not one: {}", error);
      auto held = self->state.settings.slots->get();
      auto epoch = table->epoch;
      if (!held.known() || epoch > held.epoch)
        take_table(self, std::move(*table));
      confirm(self, epoch);
    },
    [=](tick_atom) {
      tick(self);
      self->delayed_send(self, tick_every, tick_atom::value);
    },
  };
}

}  // namespace

std::string encode_adopted(const std::vector<std::pair<int32_t, std::string>>& adopted) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [instance, dir] : adopted)
    out.push_back({{"instance_id", instance}, {"store_dir", dir}});
  return out.dump();
}

std::optional<std::vector<std::pair<int32_t, std::string>>>
decode_adopted(const std::string& text) {
  auto document = nlohmann::json::parse(text, nullptr, false);
  if (!document.is_array())
    return std::nullopt;
  std::vector<std::pair<int32_t, std::string>> out;
  for (const auto& entry : document) {
    if (!entry.is_object() || !entry.contains("instance_id")
        || !entry["instance_id"].is_number_integer() || !entry.contains("store_dir")
        || !entry["store_dir"].is_string())
      return std::nullopt;
    out.emplace_back(entry["instance_id"].get<int32_t>(), entry["store_dir"].get<std::string>());
  }
  return out;
}

bool parse_member_line(const std::string& line, int32_t& instance, std::string& address) {
  auto space = line.find(' ');
  if (space == std::string::npos || space == 0 || space > 5)
    return false;
  int32_t number = 0;
  for (size_t i = 0; i < space; ++i) {
    if (line[i] < '0' || line[i] > '9')
      return false;
    number = number * 10 + (line[i] - '0');
  }
  std::string host;
  uint16_t port = 0;
  if (number <= 0 || !split_address(line.substr(space + 1), host, port))
    return false;
  instance = number;
  address = line.substr(space + 1);
  return true;
}

cluster_actor spawn_cluster(caf::actor_system& system, cluster_settings settings) {
  return system.spawn(cluster_behavior, std::move(settings));
}

}  // namespace paybus
