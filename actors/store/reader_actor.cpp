#include <caf/actor_system.hpp>
#include <caf/typed_event_based_actor.hpp>
#include <spdlog/spdlog.h>

#include "actors/store/store_actor.hpp"
#include "common/thread_name.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

namespace {

caf::result<payment_lookup> answer(rocksdb::Status status,
                                   std::optional<payment_record>& record) {
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

reader_actor::behavior_type reader_behavior(reader_actor::pointer self,
                                            local_store* store) {
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
  };
}

} // namespace

reader_actor spawn_reader(caf::actor_system& system, local_store& store) {
  return system.spawn<caf::detached>(reader_behavior, &store);
}

} // namespace paybus
