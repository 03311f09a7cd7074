#include "storage/database/pg_database.hpp"

#include <poll.h>

#include <cstring>

#include <libpq-fe.h>

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

} // namespace

pg_database::pg_database(pg_database_options options)
  : options_(std::move(options)) {
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

bool pg_database::execute(const std::string& sql,
                          const std::vector<const char*>& params,
                          std::string& error,
                          std::vector<std::string>* rows) {
  rows_refused_ = false;
  if (connection_ == nullptr) {
    error = "not connected";
    return false;
  }
  int64_t deadline = monotonic_now_ms() + options_.statement_timeout_ms;
  int sent = params.empty()
               ? PQsendQuery(connection_, sql.c_str())
               : PQsendQueryParams(connection_, sql.c_str(),
                                   static_cast<int>(params.size()), nullptr,
                                   params.data(), nullptr, nullptr, 0);
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
        rows_refused_ = state != nullptr && (std::strncmp(state, "22", 2) == 0
                                             || std::strncmp(state, "23", 2) == 0);
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

} // namespace

bool pg_database::insert_orders(const std::vector<payment_record>& records,
                                std::string& error) {
  if (records.empty())
    return true;
  static const std::string sql
    = "INSERT INTO payment_orders (pay_id, merchant_id, merchant_order_no, amount, currency, "
      "subject, channel_id, instance_id, created_at) "
      "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], "
      "$6::text[], $7::text[], $8::integer[], $9::timestamptz[]) "
      "ON CONFLICT DO NOTHING";
  std::vector<pg_array_literal> columns(9);
  for (const auto& record : records) {
    columns[0].add(record.pay_id);
    columns[1].add(record.order.merchant_id);
    columns[2].add(record.order.merchant_order_no);
    columns[3].add(std::to_string(record.order.amount_minor));
    columns[4].add(record.order.currency);
    add_or_null(columns[5], record.order.subject);
    add_or_null(columns[6], record.order.channel_id);
    columns[7].add(std::to_string(record.instance_id));
    columns[8].add(format_rfc3339_ms(record.created_at_ms));
  }
  return execute(sql, column_parameters(columns), error);
}

bool pg_database::insert_results(const std::vector<payment_result>& results,
                                 std::string& error) {
  if (results.empty())
    return true;
  static const std::string sql
    = "INSERT INTO payment_results (pay_id, status, channel_id, channel_txn_id, amount, "
      "finished_at, source) "
      "SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], "
      "$6::timestamptz[], $7::text[]) "
      "ON CONFLICT DO NOTHING";
  std::vector<pg_array_literal> columns(7);
  for (const auto& result : results) {
    columns[0].add(result.pay_id);
    columns[1].add(to_string(result.status));
    add_or_null(columns[2], result.channel_id);
    add_or_null(columns[3], result.channel_txn_id);
    columns[4].add(std::to_string(result.amount_minor));
    columns[5].add(format_rfc3339_ms(result.finished_at_ms));
    columns[6].add(to_string(result.source));
  }
  return execute(sql, column_parameters(columns), error);
}

std::optional<int32_t> pg_database::register_instance(
  const std::string& fingerprint, const std::string& uri, std::string& error) {
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

} // namespace paybus
