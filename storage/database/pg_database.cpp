#include "storage/database/pg_database.hpp"

#include <poll.h>

#include <algorithm>
#include <cstring>

#include <libpq-fe.h>
#include <nlohmann/json.hpp>

#include "common/clock.hpp"

namespace paybus {

const char* const pg_schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS payment_orders (
  pay_id text PRIMARY KEY, merchant_id text NOT NULL, merchant_order_no text NOT NULL,
  amount bigint NOT NULL, currency char(3) NOT NULL, subject text, channel_id text,
  instance_id integer NOT NULL, created_at timestamptz NOT NULL,
  UNIQUE (merchant_id, merchant_order_no));
CREATE TABLE IF NOT EXISTS payment_results (
  pay_id text PRIMARY KEY REFERENCES payment_orders (pay_id),
  status text NOT NULL, channel_id text, channel_txn_id text, amount bigint NOT NULL,
  finished_at timestamptz NOT NULL, source text NOT NULL);
CREATE TABLE IF NOT EXISTS paybus_instances (
  instance_id serial PRIMARY KEY, fingerprint text UNIQUE NOT NULL, uri text,
  registered_at timestamptz NOT NULL DEFAULT now());
ALTER TABLE paybus_instances ADD COLUMN IF NOT EXISTS adopted_by integer;
CREATE TABLE IF NOT EXISTS paybus_slots (
  slot integer PRIMARY KEY CHECK (slot >= 0), instance_id integer NOT NULL,
  epoch bigint NOT NULL, changed_at timestamptz NOT NULL DEFAULT now());
)sql";

namespace {

/// Waits until the socket is ready for `events` or the deadline passes.
bool wait_socket(int socket, short events, int64_t deadline_ms) {
  int64_t remaining = deadline_ms - monotonic_now_ms();
  if (remaining <= 0)
    return false;
  pollfd fd{socket, events, 0};
  int ready = ::poll(&fd, 1, static_cast<int>(remaining));
  return ready > 0;
}

std::string one_line(const char* text) {
  std::string line = text == nullptr ? "" : text;
  while (!line.empty() && (line.back() == '\n' || line.back() == ' '))
    line.pop_back();
  for (auto& c : line)
    if (c == '\n')
      c = ' ';
  return line;
}

}  // namespace

pg_database::pg_database(pg_database_options options) : options_(std::move(options)) {
}

pg_database::~pg_database() {
  disconnect();
}

void pg_database::disconnect() {
  if (connection_ != nullptr) {
    PQfinish(connection_);
    connection_ = nullptr;
  }
}

bool pg_database::connect(std::string& error) {
  const char* keywords[] = {"dbname", "application_name", nullptr};
  const char* values[] = {options_.url.c_str(), "paybus", nullptr};
  pg_conn* connection = PQconnectStartParams(keywords, values, 1);
  if (connection == nullptr) {
    error = "cannot allocate a database connection";
    return false;
  }
  int64_t deadline = monotonic_now_ms() + options_.connect_timeout_ms;
  auto state = PGRES_POLLING_WRITING;
  while (true) {
    if (PQstatus(connection) == CONNECTION_BAD) {
      error = one_line(PQerrorMessage(connection));
      PQfinish(connection);
      return false;
    }
    if (state == PGRES_POLLING_OK)
      break;
    if (state == PGRES_POLLING_FAILED) {
      error = one_line(PQerrorMessage(connection));
      PQfinish(connection);
      return false;
    }
    short events = state == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (!wait_socket(PQsocket(connection), events, deadline)) {
      error = "timed out connecting to the database";
      PQfinish(connection);
      return false;
    }
    state = PQconnectPoll(connection);
  }
  if (PQsetnonblocking(connection, 1) != 0) {
    error = "cannot make the database connection non-blocking";
    PQfinish(connection);
    return false;
  }
  connection_ = connection;
  return true;
}

bool pg_database::ensure_ready(std::string& error) {
  if (connection_ != nullptr)
    return true;
  if (!connect(error))
    return false;
  if (!execute("SET client_min_messages = warning", {}, error)
      || !execute(pg_schema_sql, {}, error))
    return false;
  return true;
}

bool pg_database::execute(const std::string& sql, const std::vector<const char*>& params,
                          std::string& error, std::vector<std::string>* rows) {
  rows_refused_ = false;
  if (connection_ == nullptr) {
    error = "not connected";
    return false;
  }
  int64_t deadline = monotonic_now_ms() + options_.statement_timeout_ms;
  int sent = params.empty()
               ? PQsendQuery(connection_, sql.c_str())
               : PQsendQueryParams(connection_, sql.c_str(), static_cast<int>(params.size()),
                                   nullptr, params.data(), nullptr, nullptr, 0);
  if (sent != 1) {
    error = one_line(PQerrorMessage(connection_));
    disconnect();
    return false;
  }
  // Push the statement out without ever blocking past the deadline.
  int flushed;
  while ((flushed = PQflush(connection_)) == 1) {
    if (!wait_socket(PQsocket(connection_), POLLOUT | POLLIN, deadline)) {
      error = "timed out sending to the database";
      disconnect();
      return false;
    }
    if (PQconsumeInput(connection_) != 1)
      break;
  }
  if (flushed == -1) {
    error = one_line(PQerrorMessage(connection_));
    disconnect();
    return false;
  }
  bool ok = true;
  while (true) {
    while (PQisBusy(connection_)) {
      if (!wait_socket(PQsocket(connection_), POLLIN, deadline)) {
        error = "timed out waiting for the database";
        disconnect();
        return false;
      }
      if (PQconsumeInput(connection_) != 1) {
        error = one_line(PQerrorMessage(connection_));
        disconnect();
        return false;
      }
    }
    PGresult* result = PQgetResult(connection_);
    if (result == nullptr)
      break;
    auto status = PQresultStatus(result);
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      if (ok) {
        error = one_line(PQresultErrorMessage(result));
        const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
        rows_refused_ = state != nullptr
                        && (std::strncmp(state, "22", 2) == 0 || std::strncmp(state, "23", 2) == 0);
      }
      ok = false;
    } else if (rows != nullptr) {
      for (int row = 0; row < PQntuples(result); ++row)
        rows->emplace_back(PQgetvalue(result, row, 0));
    }
    PQclear(result);
  }
  if (!ok && rows_refused_ && PQstatus(connection_) == CONNECTION_OK)
    return false;  // the connection is sound: only those rows were refused
  rows_refused_ = false;
  if (!ok || PQstatus(connection_) != CONNECTION_OK) {
    if (ok)
      error = one_line(PQerrorMessage(connection_));
    disconnect();
    return false;
  }
  return true;
}

void pg_array_literal::separate() {
  if (text_.size() > 1)
    text_ += ',';
}

void pg_array_literal::add(std::string_view value) {
  separate();
  text_ += '"';
  for (char c : value) {
    if (c == '"' || c == '\\')
      text_ += '\\';
    text_ += c;
  }
  text_ += '"';
}

void pg_array_literal::add_null() {
  separate();
  text_ += "NULL";
}

const std::string& pg_array_literal::finish() {
  if (!finished_)
    text_ += '}';
  finished_ = true;
  return text_;
}

namespace {

/// An absent optional field (empty) is SQL NULL.
void add_or_null(pg_array_literal& column, const std::string& value) {
  if (value.empty())
    column.add_null();
  else
    column.add(value);
}

/// The statement's parameters: each column's finished literal.
std::vector<const char*> column_parameters(std::vector<pg_array_literal>& columns) {
  std::vector<const char*> params;
  params.reserve(columns.size());
  for (auto& column : columns)
    params.push_back(column.finish().c_str());
  return params;
}

/// Runs a batch's insert, which answers the pay_ids it did not take, then
/// compares those rows alone with what the table holds: `differing` gets
/// the pay_ids whose row the table holds otherwise. `run(sql, columns,
/// rows)` executes one statement; `columns_of(rows)` builds its parameters.
template <class Row, class ColumnsOf, class Run>
bool insert_then_compare(const std::vector<Row>& batch, const std::string& insert_sql,
                         const std::string& compare_sql, ColumnsOf columns_of, Run run,
                         std::vector<std::string>* differing) {
  std::vector<const Row*> all;
  all.reserve(batch.size());
  for (const auto& row : batch)
    all.push_back(&row);
  std::vector<std::string> not_taken;
  if (!run(insert_sql, columns_of(all), not_taken))
    return false;
  if (differing != nullptr)
    differing->clear();
  if (not_taken.empty())
    return true;
  std::vector<const Row*> again;
  for (const auto& row : batch)
    if (std::find(not_taken.begin(), not_taken.end(), row.pay_id) != not_taken.end())
      again.push_back(&row);
  std::vector<std::string> held_otherwise;
  if (!run(compare_sql, columns_of(again), held_otherwise))
    return false;
  if (differing != nullptr)
    *differing = std::move(held_otherwise);
  return true;
}

}  // namespace

std::string row_json(const payment_record& record) {
  return nlohmann::json{{"pay_id", record.pay_id},
                        {"merchant_id", record.order.merchant_id},
                        {"merchant_order_no", record.order.merchant_order_no},
                        {"amount", record.order.amount_minor},
                        {"currency", record.order.currency},
                        {"subject", record.order.subject},
                        {"channel_id", record.order.channel_id},
                        {"instance_id", record.instance_id},
                        {"created_at", format_rfc3339_ms(record.created_at_ms)}}
    .dump();
}

std::string row_json(const payment_result& result) {
  return nlohmann::json{
    {"pay_id", result.pay_id},         {"status", result.status},
    {"channel_id", result.channel_id}, {"channel_txn_id", result.channel_txn_id},
    {"amount", result.amount_minor},   {"finished_at", format_rfc3339_ms(result.finished_at_ms)},
    {"source", result.source}}
    .dump();
}

bool pg_database::insert_orders(const std::vector<payment_record>& records, std::string& error,
                                std::vector<std::string>* differing) {
  if (records.empty())
    return true;
  // Rows already there are left as they are (a row sent again after a
  // crash); a row the table holds otherwise under its pay_id or its
  // (merchant, merchant_order_no) is named in the answer, never hidden.
  // The common case costs one hash of the batch: only rows not taken are
  // compared, in a second statement, with what the table holds.
  static const std::string sql
    = "WITH batch AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
      "$5::text[], $6::text[], $7::text[], $8::integer[], $9::timestamptz[]) AS b(pay_id, "
      "merchant_id, merchant_order_no, amount, currency, subject, channel_id, instance_id, "
      "created_at)), "
      "taken AS (INSERT INTO payment_orders (pay_id, merchant_id, merchant_order_no, amount, "
      "currency, subject, channel_id, instance_id, created_at) SELECT * FROM batch "
      "ON CONFLICT DO NOTHING RETURNING pay_id) "
      "SELECT pay_id FROM batch EXCEPT SELECT pay_id FROM taken";
  static const std::string compare
    = "SELECT b.pay_id FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], "
      "$5::text[], $6::text[], $7::text[], $8::integer[], $9::timestamptz[]) AS b(pay_id, "
      "merchant_id, merchant_order_no, amount, currency, subject, channel_id, instance_id, "
      "created_at) WHERE NOT EXISTS (SELECT 1 FROM payment_orders o WHERE o.pay_id = b.pay_id "
      "AND o.merchant_id = b.merchant_id AND o.merchant_order_no = b.merchant_order_no AND "
      "o.amount = b.amount AND o.currency = b.currency AND o.subject IS NOT DISTINCT FROM "
      "b.subject AND o.channel_id IS NOT DISTINCT FROM b.channel_id AND o.instance_id = "
      "b.instance_id AND o.created_at = b.created_at)";
  auto columns_of = [](const std::vector<const payment_record*>& rows) {
    std::vector<pg_array_literal> columns(9);
    for (const auto* record : rows) {
      columns[0].add(record->pay_id);
      columns[1].add(record->order.merchant_id);
      columns[2].add(record->order.merchant_order_no);
      columns[3].add(std::to_string(record->order.amount_minor));
      columns[4].add(record->order.currency);
      add_or_null(columns[5], record->order.subject);
      add_or_null(columns[6], record->order.channel_id);
      columns[7].add(std::to_string(record->instance_id));
      columns[8].add(format_rfc3339_ms(record->created_at_ms));
    }
    return columns;
  };
  auto run = [&](const std::string& statement, std::vector<pg_array_literal> columns,
                 std::vector<std::string>& rows) {
    return execute(statement, column_parameters(columns), error, &rows);
  };
  return insert_then_compare(records, sql, compare, columns_of, run, differing);
}

bool pg_database::insert_results(const std::vector<payment_result>& results, std::string& error,
                                 std::vector<std::string>* differing) {
  if (results.empty())
    return true;
  static const std::string sql
    = "WITH batch AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
      "$5::bigint[], $6::timestamptz[], $7::text[]) AS b(pay_id, status, channel_id, "
      "channel_txn_id, amount, finished_at, source)), "
      "taken AS (INSERT INTO payment_results (pay_id, status, channel_id, channel_txn_id, "
      "amount, finished_at, source) SELECT * FROM batch ON CONFLICT DO NOTHING RETURNING "
      "pay_id) "
      "SELECT pay_id FROM batch EXCEPT SELECT pay_id FROM taken";
  static const std::string compare
    = "SELECT b.pay_id FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], "
      "$5::bigint[], $6::timestamptz[], $7::text[]) AS b(pay_id, status, channel_id, "
      "channel_txn_id, amount, finished_at, source) WHERE NOT EXISTS (SELECT 1 FROM "
      "payment_results r WHERE r.pay_id = b.pay_id AND r.status = b.status AND r.channel_id IS "
      "NOT DISTINCT FROM b.channel_id AND r.channel_txn_id IS NOT DISTINCT FROM "
      "b.channel_txn_id AND r.amount = b.amount AND r.finished_at = b.finished_at AND "
      "r.source = b.source)";
  auto columns_of = [](const std::vector<const payment_result*>& rows) {
    std::vector<pg_array_literal> columns(7);
    for (const auto* result : rows) {
      columns[0].add(result->pay_id);
      columns[1].add(to_string(result->status));
      add_or_null(columns[2], result->channel_id);
      add_or_null(columns[3], result->channel_txn_id);
      columns[4].add(std::to_string(result->amount_minor));
      columns[5].add(format_rfc3339_ms(result->finished_at_ms));
      columns[6].add(to_string(result->source));
    }
    return columns;
  };
  auto run = [&](const std::string& statement, std::vector<pg_array_literal> columns,
                 std::vector<std::string>& rows) {
    return execute(statement, column_parameters(columns), error, &rows);
  };
  return insert_then_compare(results, sql, compare, columns_of, run, differing);
}

std::optional<std::string>
pg_database::rows_held(const std::string& table, const payment_record& record, std::string& error) {
  std::vector<std::string> rows;
  bool ok = table == "payment_orders"
              ? execute("SELECT coalesce(json_agg(o)::text, '[]') FROM payment_orders o WHERE "
                        "o.pay_id = $1 OR (o.merchant_id = $2 AND o.merchant_order_no = $3)",
                        {record.pay_id.c_str(), record.order.merchant_id.c_str(),
                         record.order.merchant_order_no.c_str()},
                        error, &rows)
              : execute("SELECT coalesce(json_agg(r)::text, '[]') FROM payment_results r WHERE "
                        "r.pay_id = $1",
                        {record.pay_id.c_str()}, error, &rows);
  if (!ok)
    return std::nullopt;
  return rows.empty() ? std::string{"[]"} : rows.front();
}

std::optional<int32_t> pg_database::register_instance(const std::string& fingerprint,
                                                      const std::string& uri, std::string& error) {
  if (!ensure_ready(error))
    return std::nullopt;
  std::vector<std::string> rows;
  if (!execute("INSERT INTO paybus_instances (fingerprint, uri) VALUES ($1, $2) "
               "ON CONFLICT (fingerprint) DO UPDATE SET uri = EXCLUDED.uri "
               "RETURNING instance_id",
               {fingerprint.c_str(), uri.c_str()}, error, &rows))
    return std::nullopt;
  if (rows.size() != 1) {
    error = "registering the instance returned no row";
    return std::nullopt;
  }
  return static_cast<int32_t>(std::stol(rows[0]));
}

std::optional<std::string> pg_database::claim_instance(int32_t instance_id,
                                                       const std::string& fingerprint,
                                                       const std::string& uri, std::string& error) {
  if (!ensure_ready(error))
    return std::nullopt;
  auto id = std::to_string(instance_id);
  // Entered if free; the registry's own numbering then moves past it, so
  // that it never hands the number to another instance.
  std::vector<std::string> rows;
  if (!execute("INSERT INTO paybus_instances (instance_id, fingerprint, uri) VALUES ($1, $2, $3) "
               "ON CONFLICT DO NOTHING",
               {id.c_str(), fingerprint.c_str(), uri.c_str()}, error)
      || !execute("SELECT setval(pg_get_serial_sequence('paybus_instances', 'instance_id'), "
                  "greatest((SELECT max(instance_id) FROM paybus_instances), 1))",
                  {}, error)
      || !execute("SELECT CASE WHEN adopted_by IS NULL THEN fingerprint ELSE 'none: the number was "
                  "adopted by instance ' || adopted_by END FROM paybus_instances WHERE "
                  "instance_id = $1",
                  {id.c_str()}, error, &rows))
    return std::nullopt;
  if (rows.empty()) {
    // Free, but this fingerprint holds another number: the row was not entered.
    std::vector<std::string> other;
    if (!execute("SELECT instance_id::text FROM paybus_instances WHERE fingerprint = $1",
                 {fingerprint.c_str()}, error, &other))
      return std::nullopt;
    return other.empty() ? std::string{} : "itself under number " + other.front();
  }
  if (rows.front() == fingerprint
      && !execute("UPDATE paybus_instances SET uri = $2 WHERE instance_id = $1 AND adopted_by IS "
                  "NULL",
                  {id.c_str(), uri.c_str()}, error))
    return std::nullopt;
  return rows.front();
}

std::optional<std::vector<std::string>>
pg_database::cluster_members(int32_t instance_id, const std::string& fingerprint,
                             const std::string& own_uri, std::string& error) {
  if (!ensure_ready(error))
    return std::nullopt;
  auto id = std::to_string(instance_id);
  std::vector<std::string> rows;
  if (!execute("UPDATE paybus_instances SET uri = $3 WHERE instance_id = $1 AND fingerprint = $2 "
               "AND uri IS DISTINCT FROM $3 AND adopted_by IS NULL",
               {id.c_str(), fingerprint.c_str(), own_uri.c_str()}, error)
      || !execute("SELECT instance_id::text || ' ' || uri FROM paybus_instances WHERE uri IS NOT "
                  "NULL AND uri <> '' AND position('://' in uri) = 0 ORDER BY instance_id",
                  {}, error, &rows))
    return std::nullopt;
  return rows;
}

std::optional<std::vector<std::string>> pg_database::slot_rows(std::string& error) {
  if (!ensure_ready(error))
    return std::nullopt;
  std::vector<std::string> rows;
  if (!execute("SELECT slot::text || ' ' || instance_id::text || ' ' || epoch::text FROM "
               "paybus_slots ORDER BY slot",
               {}, error, &rows))
    return std::nullopt;
  return rows;
}

std::optional<bool> pg_database::form_slots(const std::vector<int32_t>& instances, int32_t slots,
                                            std::string& error) {
  if (!ensure_ready(error))
    return std::nullopt;
  pg_array_literal members;
  for (auto instance : instances)
    members.add(std::to_string(instance));
  auto last = std::to_string(slots - 1);
  std::vector<std::string> rows;
  // One statement: of two forms at once, the second waits on the first's
  // rows, then leaves them.
  if (!execute("WITH formed AS (INSERT INTO paybus_slots (slot, instance_id, epoch) SELECT s, "
               "($1::integer[])[s % cardinality($1::integer[]) + 1], 1 FROM generate_series(0, "
               "$2::integer) s WHERE NOT EXISTS (SELECT 1 FROM paybus_slots) ON CONFLICT DO "
               "NOTHING RETURNING 1) SELECT count(*)::text FROM formed",
               {members.finish().c_str(), last.c_str()}, error, &rows))
    return std::nullopt;
  return !rows.empty() && rows.front() != "0";
}

std::optional<int32_t> pg_database::adopter_of(int32_t instance_id, std::string& error) {
  if (!ensure_ready(error))
    return std::nullopt;
  auto id = std::to_string(instance_id);
  std::vector<std::string> rows;
  if (!execute("SELECT coalesce(adopted_by, 0)::text FROM paybus_instances WHERE instance_id = $1",
               {id.c_str()}, error, &rows))
    return std::nullopt;
  return rows.empty() ? 0 : static_cast<int32_t>(std::stol(rows.front()));
}

std::optional<int64_t> pg_database::adopt_slots(int32_t instance_id, int32_t by,
                                                const std::string& by_uri, std::string& error) {
  if (!ensure_ready(error))
    return std::nullopt;
  auto id = std::to_string(instance_id);
  auto adopter = std::to_string(by);
  std::vector<std::string> rows;
  // One statement, so all of it or none: the dead instance's slots move at a
  // new epoch, and its registry row names its adopter and the adopter's address.
  if (!execute("WITH e AS (SELECT coalesce(max(epoch), 0) + 1 AS epoch FROM paybus_slots), "
               "moved AS (UPDATE paybus_slots SET instance_id = $2, epoch = (SELECT epoch FROM e), "
               "changed_at = now() WHERE instance_id = $1 RETURNING 1), "
               "renamed AS (UPDATE paybus_instances SET uri = $3, adopted_by = $2 WHERE "
               "instance_id = $1 RETURNING 1) "
               "SELECT (SELECT count(*) FROM moved)::text",
               {id.c_str(), adopter.c_str(), by_uri.c_str()}, error, &rows))
    return std::nullopt;
  return rows.empty() ? 0 : std::stoll(rows.front());
}

}  // namespace paybus
