#pragma once

#include "messages/types.hpp"

namespace paybus {

/// How a create request is answered, given the order the store holds for its
/// (merchant, order no): `created_now` is true only for the one request whose
/// write created it. Same body again is the existing payment; any field
/// different is a conflict. Never a second payment.
inline admission decide_admission(bool created_now, const payment_order& stored,
                                  const payment_order& requested) {
  if (created_now)
    return admission::created;
  return same_body(stored, requested) ? admission::existing
                                      : admission::conflict;
}

} // namespace paybus
