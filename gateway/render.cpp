#include "gateway/render.hpp"

#include "common/clock.hpp"
#include "gateway/http.hpp"

namespace paybus {

std::string render_payment(const payment_record& record) {
  std::string out;
  out.reserve(320);
  out.append("{\"pay_id\":");
  append_json_string(out, record.pay_id);
  out.append(",\"merchant_order_no\":");
  append_json_string(out, record.order.merchant_order_no);
  out.append(",\"status\":");
  append_json_string(out, to_string(record.status));
  out.append(",\"amount\":");
  out.append(std::to_string(record.order.amount_minor));
  out.append(",\"currency\":");
  append_json_string(out, record.order.currency);
  out.append(",\"created_at\":");
  append_json_string(out, format_rfc3339_ms(record.created_at_ms));
  out.append(",\"subject\":");
  append_json_string(out, record.order.subject);
  out.append(",\"channel\":");
  const auto& channel = record.order.channel_id.empty() ? record.routed_channel
                                                        : record.order.channel_id;
  if (channel.empty())
    out.append("null");
  else
    append_json_string(out, channel);
  if (!record.channel_txn_id.empty()) {
    out.append(",\"channel_txn_id\":");
    append_json_string(out, record.channel_txn_id);
  }
  if (record.finished_at_ms > 0) {
    out.append(",\"finished_at\":");
    append_json_string(out, format_rfc3339_ms(record.finished_at_ms));
  }
  out.push_back('}');
  return out;
}

}  // namespace paybus
