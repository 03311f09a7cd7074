#pragma once

// One commit of the single writer: read what the store holds of a batch,
// settle it (pure rules), apply the changes as one synced WriteBatch.

#include <cstdint>
#include <vector>

#include <rocksdb/status.h>

#include "actors/payment/settlement.hpp"

namespace paybus {

class local_store;

/// Reads, settles and applies `batch` at `now_ms`; `answers` is filled only
/// when the changes are durable (a status that is not OK wrote nothing).
rocksdb::Status commit(local_store& store, const store_batch& batch,
                       const settlement_policy& policy, int64_t now_ms,
                       store_batch_answers& answers);

/// Creates and nonces only, now, every final payment notified (tools, tests).
rocksdb::Status commit(local_store& store, const std::vector<payment_record>& orders,
                       const std::vector<nonce_accepted>& nonces,
                       std::vector<order_stored>& created);

/// The general form, now, every final payment notified (tools, tests).
rocksdb::Status commit(local_store& store, const store_batch& batch, store_batch_answers& answers);

}  // namespace paybus
