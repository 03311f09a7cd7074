#pragma once

// One reconciliation run of a (channel, date), whole: the statement got
// (fetched and verified, or a file), compared with the bus, repairs made
// through the bus view, and the report written atomically (API.md
// section 7). Blocking: the reconciliation actor runs it on its own thread,
// `paybus-replay reconcile` in its main thread.

#include <array>
#include <cstdint>
#include <string>

#include "actors/reconcile/comparison.hpp"
#include "actors/reconcile/statement_fetch.hpp"

namespace paybus::reconciliation {

struct run_request {
  std::string channel_id;
  std::string date;  // YYYY-MM-DD (UTC)
  std::string file;  // read this file instead of the channel's statement
  bool repair = true;
};

struct run_summary {
  std::string channel_id;
  std::string date;
  run_counts counts;
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;
  std::string statement_sha256;
  std::string report_path;   // the JSONL
  std::string summary_path;  // the summary JSON
};

struct run_places {
  std::string reports_dir;  // the report goes to <reports_dir>/reconciliation/<channel>/
  std::string scratch_dir;  // downloads and the sorter's scratch store
};

/// Runs `request` against `bus`. False with `error` when the statement
/// cannot be had or verified, or the store cannot be read or written: then
/// no report is written (what was repaired before the failure is durable,
/// and the next run counts it matched).
bool run_reconciliation(const run_request& request, const statement_source& source,
                        const run_places& places, bus_view& bus, run_summary& summary,
                        std::string& error);

/// The summary as API.md section 7 writes it.
std::string summary_json(const run_summary& summary);

}  // namespace paybus::reconciliation
