// What one notifier round's read of the webhook outbox costs once many of a
// merchant's webhooks have been delivered (docs/architecture.md, "Known
// limits"): deliveries leave deletion markers at the head of the merchant's
// queue, which every read steps over until RocksDB flushes and compacts them.
//   paybus-bench-webhook-queue [DELIVERED=100000]
// Prints the read's time with nothing delivered, between deliveries, after
// DELIVERED were, and for the periodic read of every queue from its start.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "actors/store/commit.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "storage/local/local_store.hpp"

using namespace paybus;

namespace {

constexpr int64_t forever = std::numeric_limits<int64_t>::max();

/// The one reader's cursor, as the notifier keeps it.
webhook_cursor& cursor() {
  static webhook_cursor one;
  return one;
}

/// One round's read (3 webhooks a merchant may start), in ms.
double round_read_ms(local_store& store) {
  std::vector<webhook_entry> due;
  std::optional<int64_t> next_due;
  auto started = std::chrono::steady_clock::now();
  store.due_webhooks(
    forever, monotonic_now_ms(), [](const std::string&) { return size_t{3}; }, cursor(), due,
    next_due);
  std::chrono::duration<double, std::milli> spent = std::chrono::steady_clock::now() - started;
  return spent.count();
}

/// The mean of `rounds` reads, in ms.
double mean_read_ms(local_store& store, int rounds) {
  double total = 0;
  for (int i = 0; i < rounds; ++i)
    total += round_read_ms(store);
  return total / rounds;
}

}  // namespace

int main(int argc, char** argv) {
  int delivered = argc > 1 ? std::atoi(argv[1]) : 100000;
  auto dir = (std::filesystem::temp_directory_path()
              / ("paybus-bench-webhooks-" + crypto::random_token(8)))
               .string();
  std::string error;
  auto store = local_store::open(dir, local_store_options{}, error);
  if (!store) {
    std::fprintf(stderr, "%s\n", error.c_str());
    return 1;
  }
  // DELIVERED + 3 final payments of one merchant, each with a webhook entry.
  int payments = delivered + 3;
  for (int from = 0; from < payments; from += 1000) {
    std::vector<payment_record> orders;
    store_batch results;
    for (int i = from; i < from + 1000 && i < payments; ++i) {
      payment_record order;
      order.pay_id = std::to_string(100000000 + i);
      order.order.merchant_id = "demo";
      order.order.merchant_order_no = "W-" + order.pay_id;
      order.order.amount_minor = 100;
      order.order.currency = "CNY";
      order.order.notify_url = "http://127.0.0.1:1/notify";
      order.instance_id = 1;
      orders.push_back(order);
      payment_result result;
      result.pay_id = order.pay_id;
      result.status = payment_status::succeeded;
      result.channel_id = "sim-a";
      result.amount_minor = 100;
      result.source = result_source::channel;
      results.results.push_back(result);
    }
    std::vector<order_stored> created;
    store_batch_answers answers;
    if (!commit(*store, orders, {}, created).ok() || !commit(*store, results, answers).ok()) {
      std::fprintf(stderr, "cannot write the store\n");
      return 1;
    }
  }
  double first = round_read_ms(*store);
  double later = mean_read_ms(*store, 20);
  std::printf("a round's read, %d webhooks due: %.3f ms (the first, every queue from its start), "
              "then %.3f ms\n",
              payments, first, later);
  std::vector<webhook_entry> all;
  std::optional<int64_t> next_due;
  store->due_webhooks(
    forever, monotonic_now_ms(),
    [](const std::string&) { return std::numeric_limits<size_t>::max(); }, cursor(), all, next_due);
  // As the notifier goes: a round, the deliveries it started, the next round.
  constexpr int per_round = 100;
  double reading = 0;
  int rounds = 0;
  for (int i = 0; i < delivered; ++i) {
    store->finish_webhook(all[static_cast<size_t>(i)]);
    if ((i + 1) % per_round == 0) {
      reading += round_read_ms(*store);
      ++rounds;
    }
  }
  std::printf("a round's read after each %d of %d deliveries: %.3f ms on average\n", per_round,
              delivered, rounds > 0 ? reading / rounds : 0.0);
  std::printf("a round's read after all %d were delivered (3 left): %.3f ms\n", delivered,
              mean_read_ms(*store, 20));
  // The read that goes through every queue from its start, as one does every
  // webhook_walk_interval_ms, steps over every deletion marker still there.
  std::this_thread::sleep_for(std::chrono::milliseconds{webhook_cursor::walk_interval_ms});
  std::printf("the read of every queue from its start (once every %lld ms): %.3f ms\n",
              static_cast<long long>(webhook_cursor::walk_interval_ms), round_read_ms(*store));
  store.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
