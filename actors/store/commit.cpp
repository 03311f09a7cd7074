#include "actors/store/commit.hpp"

#include "common/clock.hpp"
#include "storage/local/local_store.hpp"

namespace paybus {

rocksdb::Status commit(local_store& store, const store_batch& batch,
                       const settlement_policy& policy, int64_t now_ms,
                       store_batch_answers& answers) {
  answers = store_batch_answers{};
  store_snapshot held;
  if (auto status = store.read(keys_to_read(batch), held); !status.ok())
    return status;
  auto settled = settle(batch, held, policy, now_ms);
  if (auto status = store.apply(settled.changes); !status.ok())
    return status;
  answers = std::move(settled.answers);
  return rocksdb::Status::OK();
}

rocksdb::Status commit(local_store& store, const std::vector<payment_record>& orders,
                       const std::vector<nonce_accepted>& nonces,
                       std::vector<order_stored>& created) {
  store_batch batch;
  batch.creates = orders;
  batch.nonces = nonces;
  store_batch_answers answers;
  auto status = commit(store, batch, settlement_policy{}, unix_now_ms(), answers);
  created = std::move(answers.creates);
  return status;
}

rocksdb::Status commit(local_store& store, const store_batch& batch, store_batch_answers& answers) {
  return commit(store, batch, settlement_policy{}, unix_now_ms(), answers);
}

}  // namespace paybus
