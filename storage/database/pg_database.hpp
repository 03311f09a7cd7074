#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "messages/types.hpp"

struct pg_conn;

namespace paybus {

struct pg_database_options {
  std::string url;
  int64_t connect_timeout_ms = 3000;
  int64_t statement_timeout_ms = 5000;
};

/// A libpq connection to the transaction database with hard time limits on
/// connecting and on every statement (a hanging server costs a timeout, never
/// a stuck thread). Blocking: use it from a detached actor or its own thread.
class pg_database {
public:
  explicit pg_database(pg_database_options options);
  ~pg_database();

  pg_database(const pg_database&) = delete;
  pg_database& operator=(const pg_database&) = delete;

  bool connected() const {
    return connection_ != nullptr;
  }

  /// Connects if not connected and creates the schema if missing. On failure
  /// returns false with a one-line `error`.
  bool ensure_ready(std::string& error);

  /// Inserts payment_orders rows in one statement. A row already there as
  /// it is (sent again after a crash) is left as it is; the pay_ids of rows
  /// the table holds otherwise, under the same pay_id or (merchant,
  /// merchant_order_no), go to `differing`: not inserted, never hidden. On
  /// failure the connection is dropped, unless the database refused the rows
  /// themselves.
  bool insert_orders(const std::vector<payment_record>& records, std::string& error,
                     std::vector<std::string>* differing = nullptr);

  /// Inserts payment_results rows the same way (their orders must be there).
  bool insert_results(const std::vector<payment_result>& results, std::string& error,
                      std::vector<std::string>* differing = nullptr);

  /// What `table` (payment_orders or payment_results) holds under the
  /// record's pay_id (and, for orders, its merchant and merchant_order_no),
  /// as a JSON array of rows.
  std::optional<std::string> rows_held(const std::string& table, const payment_record& record,
                                       std::string& error);

  /// Registers this instance (or finds its earlier registration) and returns
  /// its instance number.
  std::optional<int32_t> register_instance(const std::string& fingerprint, const std::string& uri,
                                           std::string& error);

  /// Enters `instance_id` (a number this instance took while the registry
  /// was unreachable) for `fingerprint`, unless it is taken, and makes the
  /// registry's numbering pass it. Returns the fingerprint the registry
  /// holds for that number then (this one's if the claim stands), or, if
  /// it holds none, "" or a word on where this fingerprint is registered
  /// instead; nothing (and `error`) if the database cannot say.
  std::optional<std::string> claim_instance(int32_t instance_id, const std::string& fingerprint,
                                            const std::string& uri, std::string& error);

  /// The cluster addresses paybus_instances holds, one "INSTANCE HOST:PORT"
  /// each (rows whose uri is a URL, of instances alone, are left out).
  /// First sets the uri of this instance's own row (its number and
  /// fingerprint) to `own_uri`, if it differs. Nothing (and `error`) if the
  /// database cannot say.
  std::optional<std::vector<std::string>>
  cluster_members(int32_t instance_id, const std::string& fingerprint, const std::string& own_uri,
                  std::string& error);

  /// The slot table's rows, "SLOT INSTANCE EPOCH" in slot order (none
  /// before the cluster is formed). Nothing (and `error`) if the database
  /// cannot say.
  std::optional<std::vector<std::string>> slot_rows(std::string& error);

  /// Forms the slot table if there is none: slot s owned by
  /// instances[s % n], epoch 1. True if this call formed it, false if a
  /// table was there; nothing (and `error`) if the database cannot say.
  std::optional<bool> form_slots(const std::vector<int32_t>& instances, int32_t slots,
                                 std::string& error);

  /// The instance that adopted `instance_id` (0: none, or no row).
  /// Nothing (and `error`) if the database cannot say.
  std::optional<int32_t> adopter_of(int32_t instance_id, std::string& error);

  /// Moves every slot of `instance_id` to `by` at a new epoch, and marks its
  /// registry row adopted by `by`, with `by_uri` as its uri, in one
  /// statement. Returns how many slots moved; nothing (and `error`) if the
  /// database cannot say.
  std::optional<int64_t> adopt_slots(int32_t instance_id, int32_t by, const std::string& by_uri,
                                     std::string& error);

  /// Whether the last statement failed because the database refused its
  /// rows (SQLSTATE class 22, data exception, or 23, integrity constraint
  /// violation), not because it could not be reached: sending the same
  /// rows again would fail the same way.
  bool rows_refused() const {
    return rows_refused_;
  }

  void disconnect();

private:
  bool connect(std::string& error);
  /// Runs one statement with text parameters; `rows` gets the first column of
  /// each result row.
  bool execute(const std::string& sql, const std::vector<const char*>& params, std::string& error,
               std::vector<std::string>* rows = nullptr);

  pg_database_options options_;
  bool rows_refused_ = false;
  pg_conn* connection_ = nullptr;
};

/// A row as the bus writes it, as JSON text (for a row kept apart).
std::string row_json(const payment_record& record);
std::string row_json(const payment_result& result);

/// Builds a PostgreSQL array literal ({"a","b",NULL}) one element at a time,
/// for a statement that takes a whole column as one parameter: its text and
/// parse stay the same size whatever the number of rows.
class pg_array_literal {
public:
  pg_array_literal() : text_{"{"} {
  }
  /// A text element, double-quoted with `"` and `\` escaped.
  void add(std::string_view value);
  void add_null();
  /// The literal; add nothing after.
  const std::string& finish();

private:
  void separate();
  std::string text_;
  bool finished_ = false;
};

/// The schema of API.md section 6.
extern const char* const pg_schema_sql;

}  // namespace paybus
