// paybus-bench-reconcile: the reconciliation of one channel's day, timed.
//
//   paybus-bench-reconcile [N] [--shuffle]
//
// Builds a store with N SUCCEEDED payments of channel sim-a on one UTC day
// (written through the store's own settlement and commit, not through HTTP)
// and 200 more left PROCESSING, then a statement of that day with a few
// hundred planted differences (200 to repair, 100 lines dropped, 100 at
// another amount, 100 written twice, 100 foreign pay_ids, 100 malformed),
// in paid_at order (or shuffled). Then it runs the reconciliation as the
// bus does (the same runner, repairs committed as the store writer would)
// and prints lines/s, CPU and memory. N defaults to 1,000,000.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "actors/reconcile/reconciler.hpp"
#include "actors/reconcile/store_side.hpp"
#include "actors/store/commit.hpp"
#include "common/clock.hpp"
#include "common/pay_id.hpp"
#include "storage/local/local_store.hpp"

using namespace paybus;

namespace {

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
         + static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

/// The process's peak resident set since the last reset_peak_rss (VmHWM).
long peak_rss_kb() {
  std::ifstream status{"/proc/self/status"};
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0)
      return std::atol(line.c_str() + 6);
  return 0;
}

/// Resets the peak to the current resident set (Linux 4.0 on): the fill's
/// peak is not the run's.
void reset_peak_rss() {
  std::ofstream{"/proc/self/clear_refs"} << "5";
}

long rss_kb() {
  std::ifstream statm{"/proc/self/statm"};
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

int fail(const std::string& why) {
  std::fprintf(stderr, "paybus-bench-reconcile: %s\n", why.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  int64_t n = 1'000'000;
  bool shuffle = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--shuffle")
      shuffle = true;
    else
      n = std::max<int64_t>(1000, std::atoll(argv[i]));
  }
  char name[] = "/tmp/paybus-bench-reconcile-XXXXXX";
  if (mkdtemp(name) == nullptr)
    return fail("cannot make a temporary directory");
  std::string dir = name;
  const std::string date = "2026-12-03";
  int64_t noon = 0;
  parse_utc_day(date, noon);
  noon += 12 * 3'600'000;

  std::string error;
  local_store_options options;
  options.sync = false;  // the fill is not what is measured
  auto store = local_store::open(dir + "/store", options, error);
  if (!store)
    return fail(error);

  // The day: N payments SUCCEEDED through sim-a, 200 PROCESSING.
  std::printf("building a store of %lld SUCCEEDED payments...\n", static_cast<long long>(n));
  pay_id_generator ids{1, 0, noon - 3'600'000};
  const int64_t waiting = 200;
  std::vector<std::string> pay_ids;
  pay_ids.reserve(static_cast<size_t>(n + waiting));
  for (int64_t from = 0; from < n + waiting; from += 10'000) {
    std::vector<payment_record> orders;
    store_batch results;
    for (int64_t i = from; i < std::min(n + waiting, from + 10'000); ++i) {
      payment_record record;
      record.pay_id = ids.next(noon - 3'600'000 + i / 100);
      record.order.merchant_id = "demo";
      record.order.merchant_order_no = "B-" + std::to_string(i);
      record.order.amount_minor = 100 + i % 1000;
      record.order.currency = "CNY";
      record.order.expire_seconds = 900;
      record.routed_channel = "sim-a";
      record.instance_id = 1;
      record.created_at_ms = noon - 3'600'000;
      pay_ids.push_back(record.pay_id);
      if (i < n) {
        payment_result result;
        result.pay_id = record.pay_id;
        result.channel_id = "sim-a";
        result.channel_txn_id = "T" + std::to_string(i);
        result.amount_minor = record.order.amount_minor;
        result.finished_at_ms = noon + i * 3 % 36'000'000;
        results.results.push_back(result);
      }
      orders.push_back(std::move(record));
    }
    std::vector<order_stored> created;
    store_batch_answers answers;
    if (!commit(*store, orders, {}, created).ok() || !commit(*store, results, answers).ok())
      return fail("cannot fill the store");
  }

  // The statement, with its planted differences.
  auto statement = dir + "/" + date + ".csv";
  {
    std::vector<std::string> lines;
    lines.reserve(static_cast<size_t>(n + waiting + 400));
    auto line = [&](int64_t i, int64_t amount) {
      return "T" + std::to_string(i) + "," + pay_ids[static_cast<size_t>(i)] + ","
             + std::to_string(amount) + ",CNY,SUCCEEDED,"
             + format_rfc3339_ms(noon + i * 3 % 36'000'000) + "\n";
    };
    for (int64_t i = 0; i < n + waiting; ++i) {
      int64_t amount = 100 + i % 1000;
      if (i % (n / 100) == 1)
        continue;  // dropped: missing at the channel
      if (i % (n / 100) == 2)
        ++amount;  // amount mismatch
      lines.push_back(line(i, amount));
      if (i % (n / 100) == 3)
        lines.push_back(line(i, amount));  // duplicate
    }
    for (int i = 0; i < 100; ++i) {
      lines.push_back("F" + std::to_string(i) + ",9" + std::to_string(100000 + i)
                      + ",100,CNY,SUCCEEDED," + date + "T12:00:00Z\n");
      lines.push_back("M" + std::to_string(i) + ",not a line\n");
    }
    if (shuffle)
      std::shuffle(lines.begin(), lines.end(), std::mt19937_64{42});
    std::ofstream out{statement};
    out << "channel_txn_id,pay_id,amount,currency,status,paid_at\n";
    for (const auto& text : lines)
      out << text;
  }
  auto bytes = std::filesystem::file_size(statement);

  reconciliation::store_bus_view bus{*store, [&](const payment_result& result) {
                                       store_batch batch;
                                       batch.results.push_back(result);
                                       store_batch_answers answers;
                                       if (!commit(*store, batch, answers).ok())
                                         throw std::runtime_error("cannot write a repair");
                                       return answers.results.at(0).joined
                                              && answers.results.at(0).changed;
                                     }};
  reconciliation::run_request request{"sim-a", date, statement, true};
  reconciliation::run_places places{dir + "/reports", dir + "/scratch"};
  reconciliation::statement_source source;
  source.channel_id = "sim-a";
  reconciliation::run_summary summary;
  std::printf("reconciling...\n");
  std::fflush(stdout);
  if (std::getenv("PAYBUS_BENCH_PAUSE"))  // time to attach a profiler
    sleep(2);
  reset_peak_rss();
  long rss_before = rss_kb();
  double cpu_before = cpu_seconds();
  auto started = std::chrono::steady_clock::now();
  bool ok = reconciliation::run_reconciliation(request, source, places, bus, summary, error);
  double seconds
    = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  double cpu = cpu_seconds() - cpu_before;
  long peak = peak_rss_kb();
  store.reset();
  std::filesystem::remove_all(dir);
  if (!ok)
    return fail(error);
  std::printf("statement: %llu lines, %.1f MB, %s\n",
              static_cast<unsigned long long>(summary.counts.lines),
              static_cast<double>(bytes) / 1e6, shuffle ? "shuffled" : "in paid_at order");
  std::printf("reconciled in %.2f s: %.0f lines/s, CPU %.2f s (%.2f us a line)\n", seconds,
              static_cast<double>(summary.counts.lines) / seconds, cpu,
              cpu * 1e6 / static_cast<double>(summary.counts.lines));
  std::printf("memory: RSS %.1f MB before the run, peak %.1f MB (growth %.1f MB)\n",
              static_cast<double>(rss_before) / 1024, static_cast<double>(peak) / 1024,
              static_cast<double>(peak - rss_before) / 1024);
  std::printf("%s\n", reconciliation::summary_json(summary).c_str());
  return 0;
}
