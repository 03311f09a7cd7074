#include "actors/reconcile/reconciler.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/reconcile/store_side.hpp"
#include "common/clock.hpp"
#include "common/crypto.hpp"

namespace paybus::reconciliation {

namespace {

using nlohmann::json;

json line_json(const finding& found) {
  if (found.raw)
    return json{{"text", found.raw->text}};
  if (!found.fields)
    return nullptr;
  const auto& line = *found.fields;
  return json{{"channel_txn_id", line.channel_txn_id},
              {"pay_id", line.pay_id},
              {"amount", line.amount_minor},
              {"currency", line.currency},
              {"status", line.succeeded ? "SUCCEEDED" : "FAILED"},
              {"paid_at", line.paid_at}};
}

json bus_json(const finding& found) {
  if (!found.bus)
    return nullptr;
  const auto& bus = *found.bus;
  json out{{"status", to_string(bus.status)},
           {"amount", bus.amount_minor},
           {"currency", bus.currency},
           {"channel_id", bus.result ? bus.result->channel_id : bus.routed_channel},
           {"channel_txn_id", bus.result ? bus.result->channel_txn_id : std::string{}}};
  if (bus.result && bus.status == payment_status::succeeded)
    out["finished_at"] = format_rfc3339_ms(bus.result->finished_at_ms);
  return out;
}

std::string finding_json(const finding& found, const std::string& date) {
  json entry{{"class", to_string(found.what)}};
  if (found.fields)
    entry["pay_id"] = found.fields->pay_id;
  else if (found.bus)
    entry["pay_id"] = found.bus->pay_id;
  else
    entry["pay_id"] = nullptr;
  entry["line"] = found.line ? json(*found.line) : json(nullptr);
  entry["channel"] = line_json(found);
  entry["bus"] = bus_json(found);
  if (!found.why.empty())
    entry["why"] = found.why;
  if (found.line && found.statement_date != date)
    entry["statement_date"] = found.statement_date;  // the adjacent day's
  return entry.dump(-1, ' ', false, json::error_handler_t::replace);
}

/// Feeds a file to `consume` in 1 MiB pieces; false if it cannot be read.
bool read_file(const std::string& path, const std::function<void(std::string_view)>& consume) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file{std::fopen(path.c_str(), "rb"), std::fclose};
  if (!file)
    return false;
  std::string buffer(1u << 20, '\0');
  for (;;) {
    size_t got = std::fread(buffer.data(), 1, buffer.size(), file.get());
    if (got > 0)
      consume({buffer.data(), got});
    if (got < buffer.size())
      return std::ferror(file.get()) == 0;
  }
}

/// Removes a downloaded statement when the run is done with it.
struct statement_file {
  fetched_statement fetched;
  ~statement_file() {
    if (fetched.temporary) {
      std::error_code ignored;
      std::filesystem::remove(fetched.path, ignored);
    }
  }
};

}  // namespace

std::string summary_json(const run_summary& summary) {
  json counts = json::object();
  for (size_t i = 0; i < class_count; ++i)
    counts[std::string{to_string(static_cast<line_class>(i))}] = summary.counts.by_class[i];
  json out{{"channel", summary.channel_id},
           {"date", summary.date},
           {"lines", summary.counts.lines},
           {"counts", counts},
           {"started_at", format_rfc3339_ms(summary.started_at_ms)},
           {"finished_at", format_rfc3339_ms(summary.finished_at_ms)},
           {"statement_sha256", summary.statement_sha256}};
  return out.dump(2);
}

bool run_reconciliation(const run_request& request, const statement_source& source,
                        const run_places& places, bus_view& bus, run_summary& summary,
                        std::string& error) {
  summary = run_summary{};
  summary.channel_id = request.channel_id;
  summary.date = request.date;
  summary.started_at_ms = unix_now_ms();
  int64_t day_start = 0;
  if (!parse_utc_day(request.date, day_start)) {
    error = "not a date (YYYY-MM-DD): " + request.date;
    return false;
  }
  std::error_code failed;
  auto run_name = request.channel_id + "-" + request.date;
  std::filesystem::create_directories(places.scratch_dir, failed);
  auto report_dir = std::filesystem::path{places.reports_dir} / "reconciliation"
                    / request.channel_id;
  std::filesystem::create_directories(report_dir, failed);
  if (failed) {
    error = "cannot create " + report_dir.string() + ": " + failed.message();
    return false;
  }

  // The statement: a file named by the operator, or the channel's.
  statement_file statement;
  if (!request.file.empty()) {
    statement.fetched.path = request.file;
  } else if (!fetch_statement(
               source, request.date,
               (std::filesystem::path{places.scratch_dir} / (run_name + ".csv")).string(),
               statement.fetched, error)) {
    return false;
  }

  summary.report_path = (report_dir / (request.date + ".jsonl")).string();
  summary.summary_path = (report_dir / (request.date + ".summary.json")).string();
  auto report_temp = summary.report_path + ".tmp";
  std::ofstream report{report_temp, std::ios::trunc};
  if (!report) {
    error = "cannot write " + report_temp;
    return false;
  }

  run_inputs inputs;
  inputs.channel_id = request.channel_id;
  inputs.date = request.date;
  inputs.repair = request.repair;
  inputs.report = [&](const finding& found) {
    report << finding_json(found, request.date) << '\n';
  };
  int64_t last_progress = monotonic_now_ms();
  inputs.progress = [&](const char* phase, uint64_t done) {
    if (monotonic_now_ms() - last_progress < 5000)
      return;
    last_progress = monotonic_now_ms();
    spdlog::info("reconciliation {} {}: {} lines {}", request.channel_id, request.date, done,
                 phase);
  };
  auto adjacent_dir = std::filesystem::path{places.scratch_dir};
  inputs.adjacent = [&](const std::string& date, const statement_visitor& visit) {
    statement_file other;
    std::string why;
    if (!request.file.empty()) {
      // A file run looks for the adjacent day's file beside it, if named by date.
      auto name = std::filesystem::path{request.file}.filename().string();
      auto at = name.find(request.date);
      if (at == std::string::npos)
        return false;
      name.replace(at, request.date.size(), date);
      other.fetched.path = (std::filesystem::path{request.file}.parent_path() / name).string();
      if (!std::filesystem::is_regular_file(other.fetched.path, failed))
        return false;
    } else if (!fetch_statement(source, date,
                                (adjacent_dir / (run_name + "." + date + ".csv")).string(),
                                other.fetched, why)) {
      if (other.fetched.served)
        throw std::runtime_error("the adjacent statement of " + date + ": " + why);
      return false;
    }
    statement_parser parser;
    if (!read_file(other.fetched.path, [&](std::string_view bytes) { parser.feed(bytes, visit); }))
      throw std::runtime_error("cannot read " + other.fetched.path);
    parser.finish(visit);
    return true;
  };

  try {
    scratch_sorter sorter{(adjacent_dir / (run_name + ".sort")).string()};
    comparison run{inputs, bus, sorter};
    crypto::sha256_stream hash;
    bool hashed = statement.fetched.sha256.empty();
    if (!read_file(statement.fetched.path, [&](std::string_view bytes) {
          if (source.stopping != nullptr && source.stopping->load())
            throw std::runtime_error("the bus is stopping");
          if (hashed)
            hash.update(bytes);
          run.feed(bytes);
        })) {
      error = "cannot read the statement " + statement.fetched.path;
      std::filesystem::remove(report_temp, failed);
      return false;
    }
    summary.statement_sha256 = hashed ? hash.hex() : statement.fetched.sha256;
    summary.counts = run.finish();
  } catch (const std::exception& e) {
    error = e.what();
    report.close();
    std::filesystem::remove(report_temp, failed);
    return false;
  }
  report.flush();
  if (!report) {
    error = "cannot write " + report_temp + " (is the disk full?)";
    std::filesystem::remove(report_temp, failed);
    return false;
  }
  report.close();
  summary.finished_at_ms = unix_now_ms();
  // The JSONL first, then the summary: a summary present means a whole report.
  auto summary_temp = summary.summary_path + ".tmp";
  {
    std::ofstream out{summary_temp, std::ios::trunc};
    out << summary_json(summary) << '\n';
    out.flush();
    if (!out) {
      error = "cannot write " + summary_temp;
      std::filesystem::remove(report_temp, failed);
      return false;
    }
  }
  std::filesystem::rename(report_temp, summary.report_path, failed);
  if (!failed)
    std::filesystem::rename(summary_temp, summary.summary_path, failed);
  if (failed) {
    error = "cannot put the report in place: " + failed.message();
    return false;
  }
  return true;
}

}  // namespace paybus::reconciliation
