// The channel exchange alone, with nothing else of the bus: the bus's own
// channel client (requests signed on its signer threads, exchanged over one
// libcurl multi handle, answers verified) pays fresh payments to a channel
// as fast as it answers, keeping CONCURRENCY in flight, and prints how many
// came back SUCCEEDED a second. No HTTP ingress, no local store, no
// database, no actors: what is left is the part of a payment no bus built on
// this protocol can skip. the benchmark diary, sitting 13, sets it beside
// the RSA ceiling (scripts/bench-channel-floor).
//   paybus-bench-channel-floor URL BUS_KEY CHANNEL_KEY CONCURRENCY SECONDS

#include <curl/curl.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include "actors/channel/channel_client.hpp"
#include "common/crypto.hpp"

namespace {

struct tally {
  std::mutex mutex;
  std::condition_variable answered;
  size_t in_flight = 0;
  uint64_t succeeded = 0;
  uint64_t other = 0;
};

paybus::crypto::pkey_ptr load(bool is_private, const char* path) {
  std::string error;
  auto key = is_private ? paybus::crypto::load_private_key(path, error)
                        : paybus::crypto::load_public_key(path, error);
  if (!key) {
    std::fprintf(stderr, "%s: %s\n", path, error.c_str());
    std::exit(2);
  }
  return key;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s URL BUS_KEY CHANNEL_KEY CONCURRENCY SECONDS\n", argv[0]);
    return 2;
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  paybus::channel_settings_runtime settings;
  settings.id = "sim-a";
  settings.url = argv[1];
  settings.notify_url = "http://127.0.0.1:9/v1/channels/sim-a/notify";
  settings.bus_key = load(true, argv[2]);
  settings.channel_key = load(false, argv[3]);
  settings.concurrency = std::strtoul(argv[4], nullptr, 10);
  const size_t in_flight_limit = settings.concurrency;
  auto seconds = std::strtod(argv[5], nullptr);
  if (settings.concurrency == 0 || seconds <= 0) {
    std::fprintf(stderr, "CONCURRENCY and SECONDS must be positive\n");
    return 2;
  }

  tally counts;
  paybus::channel_client client{
    std::move(settings), [&](uint64_t, paybus::channel_outcome outcome) {
      std::lock_guard<std::mutex> guard{counts.mutex};
      --counts.in_flight;
      (outcome.status == paybus::channel_status::succeeded ? counts.succeeded : counts.other) += 1;
      counts.answered.notify_one();
    }};

  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  auto warm_until = start + std::chrono::seconds{2};
  auto end = warm_until
             + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>{seconds});
  uint64_t next = 1;
  uint64_t warm_succeeded = 0;
  bool warm = false;
  auto prefix = std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  std::unique_lock<std::mutex> lock{counts.mutex};
  for (;;) {
    auto now = clock::now();
    if (!warm && now >= warm_until) {
      warm = true;
      warm_succeeded = counts.succeeded;
    }
    if (now >= end)
      break;
    while (counts.in_flight < in_flight_limit) {
      paybus::payment_record record;
      record.pay_id = "F" + prefix + "-" + std::to_string(next);
      record.order.amount_minor = 1999;
      record.order.currency = "CNY";
      record.order.subject = "floor";
      ++counts.in_flight;
      lock.unlock();
      client.pay(next++, std::move(record));
      lock.lock();
    }
    counts.answered.wait_until(lock, std::min(end, warm ? end : warm_until));
  }
  auto paid = counts.succeeded - warm_succeeded;
  std::printf("succeeded %llu in %.1f s after a 2 s warm-up: %.0f/s; other outcomes %llu\n",
              static_cast<unsigned long long>(paid), seconds, paid / seconds,
              static_cast<unsigned long long>(counts.other));
  std::fflush(stdout);
  std::_Exit(0);  // exchanges still in flight are abandoned, as the bus's stop does
}
