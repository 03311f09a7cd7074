#pragma once

// The HTTP side of a payment channel, off CAF's threads. A request is signed
// on one of a few signer threads every channel shares (as many as there are
// cores: RSA is the bus's heaviest work and no channel should have more
// threads at it than the machine has cores), then exchanged on the channel's
// own thread through one libcurl multi handle: keep-alive connections, at
// most `concurrency` exchanges in flight, each with its timeout. The answer
// is verified there and handed to `deliver`, on that thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "actors/channel/channel_actor.hpp"
#include "messages/types.hpp"

namespace paybus {

class channel_client {
public:
  /// Receives each request's outcome, on the channel's thread.
  using deliver_function = std::function<void(uint64_t id, channel_outcome outcome)>;

  channel_client(channel_settings_runtime settings, deliver_function deliver);
  /// Stops the channel's thread. Exchanges still in flight are abandoned and
  /// never delivered: their payments stay unfinished in the store and are
  /// queried after the next start.
  ~channel_client();

  channel_client(const channel_client&) = delete;
  channel_client& operator=(const channel_client&) = delete;

  /// POST /v1/pay for `record`; request `id` comes back with the outcome.
  void pay(uint64_t id, payment_record record);
  /// GET /v1/pay/{pay_id}.
  void query(uint64_t id, const std::string& pay_id);

  struct core;

private:
  std::shared_ptr<core> core_;
};

}  // namespace paybus
