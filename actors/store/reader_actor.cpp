#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/store/store_actor.hpp"
#include "common/clock.hpp"
#include "common/pay_id.hpp"
#include "common/thread_name.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

namespace {

caf::result<payment_lookup> answer(rocksdb::Status status, std::optional<payment_record>& record) {
  if (!status.ok()) {
    spdlog::error("local store read failed: {}", status.ToString());
    return caf::make_error(errc::store_unavailable);
  }
  payment_lookup lookup;
  lookup.found = record.has_value();
  if (record)
    lookup.record = std::move(*record);
  return lookup;
}

nlohmann::ordered_json result_json(const payment_result& result) {
  return {{"status", to_string(result.status)},
          {"channel_id", result.channel_id},
          {"channel_txn_id", result.channel_txn_id},
          {"amount", result.amount_minor},
          {"finished_at", format_rfc3339_ms(result.finished_at_ms)},
          {"source", to_string(result.source)},
          {"flagged", result.flagged}};
}

/// Everything the store holds of `pay_id` (API.md section 8, `payment`);
/// "" if it holds neither its order nor a result.
rocksdb::Status describe_payment(local_store& store, const std::string& pay_id, std::string& out) {
  out.clear();
  std::optional<payment_record> record;
  auto status = store.get(pay_id, record);
  if (!status.ok())
    return status;
  std::optional<payment_result> result;
  status = store.get_result(pay_id, result);
  if (!status.ok())
    return status;
  if (!record && !result)
    return rocksdb::Status::OK();
  nlohmann::ordered_json json;
  json["pay_id"] = pay_id;
  json["order"] = nullptr;
  json["route"] = nullptr;
  if (record) {
    const auto& order = record->order;
    json["order"] = {{"merchant_id", order.merchant_id},
                     {"merchant_order_no", order.merchant_order_no},
                     {"amount", order.amount_minor},
                     {"currency", order.currency},
                     {"subject", order.subject},
                     {"channel_id", order.channel_id},
                     {"notify_url", order.notify_url},
                     {"expire_seconds", order.expire_seconds},
                     {"instance_id", record->instance_id},
                     {"created_at", format_rfc3339_ms(record->created_at_ms)},
                     {"status", to_string(record->status)}};
    if (!record->routed_channel.empty())
      json["route"] = {{"channel_id", record->routed_channel}, {"held", record->held}};
  }
  json["result"] = result ? result_json(*result) : nlohmann::ordered_json(nullptr);
  auto conflicts = nlohmann::ordered_json::array();
  status = store.scan("conflicts", pay_id + std::string(1, '\0'),
                      [&](std::string_view key, std::string_view value) {
                        if (key.substr(0, pay_id.size() + 1) != pay_id + std::string(1, '\0'))
                          return false;
                        payment_result late;
                        if (codec::decode_result(value, late))
                          conflicts.push_back(result_json(late));
                        return true;
                      });
  if (!status.ok())
    return status;
  json["conflicts"] = conflicts;
  nlohmann::ordered_json webhook
    = {{"attempts", 0}, {"delivered", false}, {"next_attempt_at", nullptr}};
  if (record) {
    std::optional<webhook_entry> waiting;
    status = store.find_webhook(record->order.merchant_id, "evt_" + pay_id, waiting);
    if (!status.ok())
      return status;
    webhook["event_id"] = "evt_" + pay_id;
    if (waiting) {
      webhook["attempts"] = waiting->attempt;
      webhook["next_attempt_at"] = format_rfc3339_ms(waiting->due_ms);
    } else {
      // Final, nothing waiting: delivered (or given up after
      // notify.give_up_after_ms, which the log names).
      webhook["delivered"] = is_final_status(record->status);
    }
  }
  json["webhook"] = webhook;
  out = json.dump();
  return rocksdb::Status::OK();
}

rocksdb::Status describe_backlog(local_store& store, std::string& out) {
  std::optional<std::string> oldest_row;
  std::optional<int64_t> oldest_webhook_ms;
  auto status = store.oldest_waiting(oldest_row, oldest_webhook_ms);
  if (!status.ok())
    return status;
  auto now = unix_now_ms();
  nlohmann::ordered_json json = {{"db", store.outbox_size()},
                                 {"notify", store.webhook_backlog()},
                                 {"dispatch", store.dispatch_size()},
                                 {"oldest_db_seconds", 0},
                                 {"oldest_notify_seconds", 0}};
  if (oldest_row)
    if (auto parsed = parse_pay_id(*oldest_row))
      json["oldest_db_seconds"] = std::max<int64_t>(0, now - parsed->unix_ms) / 1000;
  if (oldest_webhook_ms)
    json["oldest_notify_seconds"] = std::max<int64_t>(0, now - *oldest_webhook_ms) / 1000;
  out = json.dump();
  return rocksdb::Status::OK();
}

reader_actor::behavior_type reader_behavior(reader_actor::pointer self, local_store* store) {
  name_this_thread("pb-reader");
  return {
    [=](get_atom, const std::string& pay_id) -> caf::result<payment_lookup> {
      std::optional<payment_record> record;
      auto status = store->get(pay_id, record);
      return answer(status, record);
    },
    [=](resume_atom, const std::string& from_pay_id,
        uint32_t limit) -> caf::result<std::vector<payment_record>> {
      std::vector<payment_record> records;
      auto status = store->pending_dispatch(records, limit, from_pay_id);
      if (!status.ok()) {
        spdlog::error("cannot read unfinished payments: {}", status.ToString());
        return caf::make_error(errc::store_unavailable);
      }
      return records;
    },
    [=](find_atom, const std::string& merchant_id,
        const std::string& merchant_order_no) -> caf::result<payment_lookup> {
      std::optional<payment_record> record;
      auto status = store->find(merchant_id, merchant_order_no, record);
      return answer(status, record);
    },
    [=](inspect_atom, const std::string& pay_id) -> caf::result<std::string> {
      std::string json;
      auto status = describe_payment(*store, pay_id, json);
      if (!status.ok()) {
        spdlog::error("local store read failed: {}", status.ToString());
        return caf::make_error(errc::store_unavailable);
      }
      return json;
    },
    [=](backlog_atom) -> caf::result<std::string> {
      std::string json;
      auto status = describe_backlog(*store, json);
      if (!status.ok()) {
        spdlog::error("local store read failed: {}", status.ToString());
        return caf::make_error(errc::store_unavailable);
      }
      return json;
    },
  };
}

}  // namespace

reader_actor spawn_reader(caf::actor_system& system, local_store& store) {
  return system.spawn<caf::detached>(reader_behavior, &store);
}

}  // namespace paybus
