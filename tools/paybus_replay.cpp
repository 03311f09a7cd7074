// paybus-replay: an offline tool over the local store of a stopped bus
// (API.md section 1): stats, list, show, export, verify, replay.

#include <algorithm>
#include <filesystem>
#include <iostream>
#include <set>
#include <stdexcept>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "actors/reconcile/reconciler.hpp"
#include "actors/reconcile/store_side.hpp"
#include "actors/store/commit.hpp"
#include "common/clock.hpp"
#include "common/pay_id.hpp"
#include "storage/database/pg_database.hpp"
#include "storage/local/local_store.hpp"
#include "storage/local/record_codec.hpp"
#include "storage/local/webhook_keys.hpp"

namespace {

using nlohmann::json;
using namespace paybus;

json to_json(const payment_record& record, const std::optional<payment_result>& result) {
  json out{{"pay_id", record.pay_id},
           {"merchant_id", record.order.merchant_id},
           {"merchant_order_no", record.order.merchant_order_no},
           {"amount", record.order.amount_minor},
           {"currency", record.order.currency},
           {"subject", record.order.subject},
           {"channel",
            record.order.channel_id.empty() ? record.routed_channel : record.order.channel_id},
           {"notify_url", record.order.notify_url},
           {"expire_seconds", record.order.expire_seconds},
           {"instance_id", record.instance_id},
           {"status", to_string(record.status)},
           {"created_at", format_rfc3339_ms(record.created_at_ms)}};
  if (!record.channel_txn_id.empty())
    out["channel_txn_id"] = record.channel_txn_id;
  if (record.finished_at_ms > 0)
    out["finished_at"] = format_rfc3339_ms(record.finished_at_ms);
  if (result)
    out["result"] = json{
      {"status", result->status},   {"channel_id", result->channel_id},
      {"source", result->source},   {"amount", result->amount_minor},
      {"flagged", result->flagged}, {"finished_at", format_rfc3339_ms(result->finished_at_ms)}};
  return out;
}

int fail(const std::string& line) {
  std::cerr << "paybus-replay: " << line << std::endl;
  return 1;
}

int stats(local_store& store) {
  json out;
  for (const auto& [family, count] : store.count_keys())
    out["keys"][family] = count;
  out["database_backlog"] = store.outbox_size();
  out["webhook_backlog"] = store.webhook_backlog();
  std::optional<std::string> instance;
  store.get_meta("instance_id", instance);
  out["instance_id"] = instance.value_or("");
  out["last_pay_id"] = store.last_pay_id();
  std::cout << out.dump(2) << std::endl;
  return 0;
}

int list(local_store& store, bool pending, size_t limit) {
  size_t shown = 0;
  auto status = store.scan(
    pending ? "dispatch" : "orders", "", [&](std::string_view key, std::string_view value) {
      payment_record record;
      if (pending) {
        std::optional<payment_record> found;
        if (!store.get(std::string{key}, found).ok() || !found)
          return true;
        record = *found;
      } else if (!codec::decode_record(value, record)) {
        std::cout << std::string{key} << " DAMAGED" << std::endl;
        return ++shown < limit;
      }
      std::cout << record.pay_id << ' ' << to_string(record.status) << ' '
                << record.order.merchant_id << ' ' << record.order.merchant_order_no << ' '
                << record.order.amount_minor << ' ' << record.order.currency << std::endl;
      return ++shown < limit;
    });
  return status.ok() ? 0 : fail(status.ToString());
}

// Calls `each` with the value of every entry of `family` keyed under pay_id
// (the pay_id, a NUL, then what tells the entries apart).
template <class Each>
rocksdb::Status
scan_payment(local_store& store, const std::string& family, const std::string& pay_id, Each each) {
  const auto prefix = pay_id + '\0';
  return store.scan(family, prefix, [&](std::string_view key, std::string_view value) {
    if (key.substr(0, prefix.size()) != prefix)
      return false;
    each(value);
    return true;
  });
}

int show(local_store& store, const std::string& pay_id) {
  std::optional<payment_record> record;
  std::optional<payment_result> result;
  auto status = store.get(pay_id, record);
  if (status.ok())
    status = store.get_result(pay_id, result);
  if (!status.ok())
    return fail(status.ToString());
  if (!record && !result)
    return fail("no payment " + pay_id + " in this store");
  if (!record) {
    std::cout << json{{"pay_id", pay_id},
                      {"order", nullptr},
                      {"result_waiting_for_order", result->status}}
                   .dump(2)
              << std::endl;
    return 0;
  }
  auto shown = to_json(*record, result);
  // Results that contradicted the final one (docs/operations.md): kept, never applied.
  status = scan_payment(store, "conflicts", pay_id, [&](std::string_view value) {
    payment_result late;
    if (codec::decode_result(value, late))
      shown["conflicting_results"].push_back(
        json{{"status", to_string(late.status)},
             {"channel_id", late.channel_id},
             {"channel_txn_id", late.channel_txn_id},
             {"source", to_string(late.source)},
             {"amount", late.amount_minor},
             {"finished_at", format_rfc3339_ms(late.finished_at_ms)}});
  });
  if (!status.ok())
    return fail(status.ToString());
  // Rows the transaction database holds otherwise, kept apart (not written).
  status = scan_payment(store, "db_conflicts", pay_id, [&](std::string_view value) {
    database_conflict conflict;
    if (codec::decode_database_conflict(value, conflict))
      shown["database_conflicts"].push_back(
        json{{"table", conflict.table},
             {"ours", json::parse(conflict.ours, nullptr, false)},
             {"theirs", json::parse(conflict.theirs, nullptr, false)},
             {"found_at", format_rfc3339_ms(conflict.found_at_ms)}});
  });
  if (!status.ok())
    return fail(status.ToString());
  std::cout << shown.dump(2) << std::endl;
  return 0;
}

/// Every webhook waiting in the outbox, one JSON line each: where it is
/// queued, how often it was tried, and the URL on its order (null: the
/// merchant's configured one, if the bus has one for it).
int webhooks(local_store& store) {
  int damaged = 0;
  auto status = store.scan("webhooks", "", [&](std::string_view key, std::string_view value) {
    std::string_view merchant;
    int64_t due_ms = 0;
    codec::webhook_entry entry;
    if (!split_webhook_key(key, merchant, due_ms) || !codec::decode_webhook(value, entry)) {
      std::cerr << "paybus-replay: a webhook entry cannot be decoded" << std::endl;
      ++damaged;
      return true;
    }
    std::optional<payment_record> record;
    auto read = store.get(entry.pay_id, record);
    json line{{"merchant_id", std::string{merchant}},
              {"event_id", entry.event_id},
              {"pay_id", entry.pay_id},
              {"attempts", entry.attempt},
              {"first_due", format_rfc3339_ms(entry.first_due_ms)},
              {"due", format_rfc3339_ms(due_ms)}};
    if (!read.ok())
      line["order"] = "unreadable: " + read.ToString();
    else if (!record)
      line["order"] = nullptr;
    else
      line["notify_url"] = record->order.notify_url.empty() ? json(nullptr)
                                                            : json(record->order.notify_url);
    std::cout << line.dump() << '\n';
    return true;
  });
  std::cout.flush();
  if (!status.ok())
    return fail(status.ToString());
  return damaged == 0 ? 0 : fail(std::to_string(damaged) + " webhook entries cannot be decoded");
}

int export_jsonl(local_store& store) {
  bool damaged = false;
  auto status = store.scan("orders", "", [&](std::string_view key, std::string_view value) {
    payment_record record;
    if (!codec::decode_record(value, record)) {
      damaged = true;
      std::cerr << "paybus-replay: damaged order " << std::string{key} << " skipped" << std::endl;
      return true;
    }
    std::optional<payment_result> result;
    store.get_result(record.pay_id, result);
    std::cout << to_json(record, result).dump() << '\n';
    return true;
  });
  std::cout.flush();
  if (!status.ok())
    return fail(status.ToString());
  return damaged ? 1 : 0;
}

/// Every cross-reference the bus relies on: returns the number of problems.
int verify(local_store& store) {
  size_t problems = 0, orders = 0;
  auto problem = [&](const std::string& what) {
    if (++problems <= 20)
      std::cout << "problem: " << what << std::endl;
  };
  auto status = store.scan("orders", "", [&](std::string_view key, std::string_view value) {
    ++orders;
    payment_record record;
    if (!codec::decode_record(value, record) || record.pay_id != key) {
      problem("order " + std::string{key} + " cannot be decoded");
      return true;
    }
    if (!parse_pay_id(record.pay_id))
      problem("order " + record.pay_id + " has a malformed pay_id");
    std::optional<payment_record> by_number;
    if (!store.find(record.order.merchant_id, record.order.merchant_order_no, by_number).ok()
        || !by_number || by_number->pay_id != record.pay_id)
      problem("order " + record.pay_id + " is not what its idempotency entry names");
    if (record.status != payment_status::processing) {
      std::optional<payment_result> result;
      if (!store.get_result(record.pay_id, result).ok() || !result
          || result->status != record.status)
        problem("order " + record.pay_id + " is " + to_string(record.status)
                + " without that result");
    }
    return true;
  });
  if (status.ok())
    status = store.scan("idem", "", [&](std::string_view key, std::string_view value) {
      std::optional<payment_record> record;
      if (!store.get(std::string{value}, record).ok() || !record)
        problem("idempotency entry for pay_id " + std::string{value} + " names no order");
      return true;
    });
  if (status.ok())
    status = store.scan("outbox", "", [&](std::string_view key, std::string_view value) {
      if (value.size() < 2 || (value[0] != 'O' && value[0] != 'R')) {
        problem("damaged outbox entry");
        return true;
      }
      std::string pay_id{value.substr(1)};
      std::optional<payment_record> record;
      std::optional<payment_result> result;
      if (!store.get(pay_id, record).ok() || !record)
        problem("outbox entry names missing order " + pay_id);
      if (value[0] == 'R' && (!store.get_result(pay_id, result).ok() || !result))
        problem("outbox result entry names missing result " + pay_id);
      return true;
    });
  if (status.ok())
    status = store.scan("results", "", [&](std::string_view key, std::string_view value) {
      payment_result result;
      if (!codec::decode_result(value, result) || result.pay_id != key)
        problem("result " + std::string{key} + " cannot be decoded");
      return true;
    });
  if (status.ok())
    status = store.scan("conflicts", "", [&](std::string_view key, std::string_view value) {
      payment_result late;
      std::optional<payment_record> record;
      std::optional<payment_result> kept;
      if (!codec::decode_result(value, late)
          || key.substr(0, late.pay_id.size() + 1) != late.pay_id + '\0') {
        problem("conflicting result " + std::string{key.substr(0, key.find('\0'))}
                + " cannot be decoded");
        return true;
      }
      // It contradicted what the store held for that payment: a final result,
      // a flagged one (the payment still PROCESSING), a route to another
      // channel, or a result still waiting for its order.
      bool has_order = store.get(late.pay_id, record).ok() && record;
      bool has_result = store.get_result(late.pay_id, kept).ok() && kept;
      bool named = has_order
                     ? record->status != payment_status::processing || (has_result && kept->flagged)
                         || (!record->routed_channel.empty()
                             && record->routed_channel != late.channel_id)
                     : has_result;
      if (!named)
        problem("conflicting result for " + late.pay_id + " names nothing it could contradict");
      return true;
    });
  if (!status.ok())
    problem("cannot read the store: " + status.ToString());
  std::cout << "verify: " << orders << " orders checked, " << problems << " problems" << std::endl;
  return problems == 0 ? 0 : 1;
}

/// Delivers everything still waiting in the outbox to the database, in order.
int replay(local_store& store, const std::string& url) {
  pg_database database{{url, 5000, 60'000}};
  std::string error;
  if (!database.ensure_ready(error))
    return fail("cannot reach the database: " + error);
  size_t orders = 0, results = 0;
  uint64_t from = 0;
  while (true) {
    std::vector<outbox_entry> entries;
    auto status = store.read_outbox(from, 1000, entries);
    if (!status.ok())
      return fail(status.ToString());
    if (entries.empty())
      break;
    // What cannot be read stops the replay: delivered and removed are only
    // the entries read before it.
    outbox_rows rows;
    size_t read = 0;
    auto read_status = store.read_outbox_rows(entries, rows, read);
    entries.resize(read);
    const auto& records = rows.records;
    // Rows the database holds otherwise under their keys are kept apart in
    // the store, as the running bus does, never dropped.
    store_changes done;
    std::set<std::string> orders_apart;
    auto keep_apart = [&](const std::string& table, const payment_record& keys, std::string ours) {
      auto theirs = database.rows_held(table, keys, error);
      if (!theirs)
        return false;
      std::cerr << "\npaybus-replay: payment " << keys.pay_id << ": the " << table
                << " row is kept apart: the table holds " << *theirs << std::endl;
      done.database_conflicts.push_back(
        {table, keys.pay_id, std::move(ours), *theirs, unix_now_ms()});
      return true;
    };
    std::vector<std::string> differing;
    if (!database.insert_orders(records, error, &differing))
      return fail("the database refused a batch: " + error);
    for (const auto& record : records)
      if (std::find(differing.begin(), differing.end(), record.pay_id) != differing.end()) {
        if (!keep_apart("payment_orders", record, row_json(record)))
          return fail("cannot read what the database holds: " + error);
        orders_apart.insert(record.pay_id);
      }
    std::vector<payment_result> result_rows;
    for (const auto& result : rows.results) {
      bool apart = orders_apart.count(result.pay_id) > 0;
      if (!apart
          && !(status = store.database_conflict_kept(result.pay_id, "payment_orders", apart)).ok())
        return fail(status.ToString());
      payment_record keys;
      keys.pay_id = result.pay_id;
      if (!apart)
        result_rows.push_back(result);
      else if (!keep_apart("payment_results", keys, row_json(result)))
        return fail("cannot read what the database holds: " + error);
    }
    if (!database.insert_results(result_rows, error, &differing))
      return fail("the database refused a batch: " + error);
    for (const auto& result : result_rows)
      if (std::find(differing.begin(), differing.end(), result.pay_id) != differing.end()) {
        payment_record keys;
        keys.pay_id = result.pay_id;
        if (!keep_apart("payment_results", keys, row_json(result)))
          return fail("cannot read what the database holds: " + error);
      }
    for (const auto& entry : entries)
      done.outbox_removed.push_back(entry.sequence);
    status = store.apply(done);
    if (!status.ok())
      return fail(status.ToString());
    if (!read_status.ok()) {
      std::cerr << std::endl;
      return fail("stopped after " + std::to_string(orders + records.size()) + " order rows and "
                  + std::to_string(results + result_rows.size()) + " result rows: "
                  + read_status.ToString() + "; it and every entry after it are left in the store");
    }
    orders += records.size();
    results += result_rows.size();
    from = entries.back().sequence + 1;
    std::cerr << "\rpaybus-replay: " << orders << " order rows, " << results
              << " result rows delivered" << std::flush;
  }
  std::cerr << std::endl;
  std::cout << "replay: " << orders << " order rows and " << results
            << " result rows delivered (rows the database had already are left as they are)"
            << std::endl;
  return 0;
}

/// Reconciles a channel's statement file of a day with the stopped store:
/// the same comparison and report as the bus's reconciliation actor; with
/// `repair`, repairs committed as the store writer would (a settlement, one
/// synced batch each), else nothing written to the store.
int reconcile(local_store& store, const std::string& channel, const std::string& date,
              const std::string& file, const std::string& reports_dir, bool repair) {
  reconciliation::store_bus_view bus{
    store, [&](const payment_result& result) {
      store_batch batch;
      batch.results.push_back(result);
      store_batch_answers answers;
      auto status = commit(store, batch, answers);
      if (!status.ok())
        throw std::runtime_error("cannot write a repair: " + status.ToString());
      return answers.results.at(0).joined && answers.results.at(0).changed;
    }};
  reconciliation::run_request request{channel, date, file, repair};
  reconciliation::run_places places{reports_dir, reports_dir + "/.scratch"};
  reconciliation::statement_source no_channel;  // a file only
  no_channel.channel_id = channel;
  reconciliation::run_summary summary;
  std::string error;
  if (!reconciliation::run_reconciliation(request, no_channel, places, bus, summary, error))
    return fail("reconcile: " + error);
  std::error_code ignored;
  std::filesystem::remove_all(places.scratch_dir, ignored);
  std::cout << reconciliation::summary_json(summary) << std::endl;
  std::cerr << "paybus-replay: report " << summary.report_path
            << (repair ? "" : " (report only: nothing repaired; --repair repairs)") << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // stdout carries the output (JSON, JSONL): RocksDB's warnings go to stderr.
  spdlog::set_default_logger(spdlog::stderr_color_st("paybus-replay"));
  CLI::App app{"paybus-replay: inspect and recover the local store of a stopped bus"};
  app.require_subcommand(1);
  std::string dir;
  app.add_option("--store", dir, "the store directory (<node.data_dir>/store)")->required();
  auto* stats_cmd = app.add_subcommand("stats", "counts of everything in the store");
  bool pending = false;
  size_t limit = 1000;
  auto* list_cmd = app.add_subcommand("list", "one line per payment");
  list_cmd->add_flag("--pending", pending, "only payments not final yet");
  list_cmd->add_option("--limit", limit, "at most this many");
  std::string pay_id;
  auto* show_cmd = app.add_subcommand("show", "one payment as JSON");
  show_cmd->add_option("PAY_ID", pay_id)->required();
  std::string format = "jsonl";
  auto* export_cmd = app.add_subcommand("export", "every payment to stdout");
  export_cmd->add_option("--format", format)->check(CLI::IsMember({"jsonl"}));
  auto* verify_cmd = app.add_subcommand("verify", "integrity check; non-zero exit on damage");
  auto* webhooks_cmd = app.add_subcommand("webhooks", "every webhook waiting for delivery");
  std::string url;
  auto* replay_cmd = app.add_subcommand("replay", "deliver what the database has not received");
  replay_cmd->add_option("--database", url, "libpq connection URI")->required();
  std::string channel, date, file, reports_dir;
  bool repair = false;
  auto* reconcile_cmd = app.add_subcommand(
    "reconcile",
    "compare a channel's statement file of a day with the store (report only unless --repair)");
  reconcile_cmd->add_option("--channel", channel, "the channel id")->required();
  reconcile_cmd->add_option("--date", date, "the UTC day, YYYY-MM-DD")->required();
  reconcile_cmd->add_option("--file", file, "the statement (API.md section 4's CSV)")
    ->required()
    ->check(CLI::ExistingFile);
  reconcile_cmd->add_option("--reports", reports_dir,
                            "where the report goes (default: reports/ beside the store)");
  reconcile_cmd->add_flag("--repair", repair, "write the repairs (results, source reconciliation)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (!std::filesystem::exists(std::filesystem::path{dir} / "CURRENT"))
    return fail("no local store at " + dir);
  std::string error;
  local_store_options options;
  auto store = local_store::open(dir, options, error);
  if (!store)
    return fail(error);
  if (*stats_cmd)
    return stats(*store);
  if (*list_cmd)
    return list(*store, pending, limit);
  if (*show_cmd)
    return show(*store, pay_id);
  if (*export_cmd)
    return export_jsonl(*store);
  if (*verify_cmd)
    return verify(*store);
  if (*webhooks_cmd)
    return webhooks(*store);
  if (*replay_cmd)
    return replay(*store, url);
  if (*reconcile_cmd)
    return reconcile(*store, channel, date, file,
                     reports_dir.empty()
                       ? (std::filesystem::path{dir}.parent_path() / "reports").string()
                       : reports_dir,
                     repair);
  return 2;
}
