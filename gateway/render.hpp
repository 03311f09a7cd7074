#pragma once

#include <string>

#include "messages/types.hpp"

namespace paybus {

/// The payment object of API.md section 3: pay_id, merchant_order_no,
/// status, amount, currency, created_at, subject, channel (the one named,
/// else the one routed to; null while unrouted), and channel_txn_id and
/// finished_at once known.
std::string render_payment(const payment_record& record);

}  // namespace paybus
