#pragma once

// Sends merchant webhooks for the notifier, off CAF's threads: one thread
// and one libcurl multi handle for every delivery in flight (keep-alive
// connections, each transfer with its own timeout). Each delivery is signed
// there as API.md section 5 says, with a fresh timestamp and nonce, just
// before it goes out.

#include <cstdint>
#include <functional>
#include <memory>

#include "actors/webhook/notifier.hpp"
#include "messages/types.hpp"

namespace paybus {

class webhook_sender {
public:
  /// Receives each delivery's HTTP status (0: no answer: refused, timed
  /// out, broken, unknown merchant), on the sender's thread.
  using done_function = std::function<void(uint64_t id, int32_t http_status)>;

  webhook_sender(const notifier_settings& settings, done_function done);
  /// Stops the thread; deliveries in flight are abandoned, never reported
  /// (their entries stay in the outbox and are sent again: at least once).
  ~webhook_sender();

  webhook_sender(const webhook_sender&) = delete;
  webhook_sender& operator=(const webhook_sender&) = delete;

  /// Starts delivery `id` as soon as the thread takes it.
  void send(uint64_t id, webhook_delivery delivery);

  struct core;

private:
  std::unique_ptr<core> core_;
};

}  // namespace paybus
