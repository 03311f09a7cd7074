#include "storage/pg_database.hpp"

#include <poll.h>

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

/// Appends "($1,...,$n),(...)" for `rows` rows of `columns` parameters.
void append_placeholders(std::string& sql, size_t rows, int columns) {
  for (size_t row = 0; row < rows; ++row) {
    if (row > 0)
      sql += ',';
    sql += '(';
    for (int column = 0; column < columns; ++column) {
      if (column > 0)
        sql += ',';
      sql += '$';
      sql += std::to_string(row * static_cast<size_t>(columns) + static_cast<size_t>(column) + 1);
    }
    sql += ')';
  }
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
      if (ok)
        error = one_line(PQresultErrorMessage(result));
      ok = false;
    } else if (rows != nullptr) {
      for (int row = 0; row < PQntuples(result); ++row)
        rows->emplace_back(PQgetvalue(result, row, 0));
    }
    PQclear(result);
  }
  if (!ok || PQstatus(connection_) != CONNECTION_OK) {
    if (ok)
      error = one_line(PQerrorMessage(connection_));
    disconnect();
    return false;
  }
  return true;
}

bool pg_database::insert_orders(const std::vector<payment_record>& records,
                                std::string& error) {
  if (records.empty())
    return true;
  constexpr int columns = 9;
  std::string sql
    = "INSERT INTO payment_orders (pay_id, merchant_id, merchant_order_no, "
      "amount, currency, subject, channel_id, instance_id, created_at) VALUES ";
  std::vector<std::string> texts;
  texts.reserve(records.size() * 4);
  std::vector<const char*> params;
  params.reserve(records.size() * columns);
  append_placeholders(sql, records.size(), columns);
  for (size_t row = 0; row < records.size(); ++row) {
    const auto& record = records[row];
    texts.push_back(std::to_string(record.order.amount_minor));
    const char* amount = texts.back().c_str();
    texts.push_back(std::to_string(record.instance_id));
    const char* instance = texts.back().c_str();
    texts.push_back(format_rfc3339_ms(record.created_at_ms));
    const char* created = texts.back().c_str();
    params.push_back(record.pay_id.c_str());
    params.push_back(record.order.merchant_id.c_str());
    params.push_back(record.order.merchant_order_no.c_str());
    params.push_back(amount);
    params.push_back(record.order.currency.c_str());
    params.push_back(record.order.subject.empty() ? nullptr
                                                  : record.order.subject.c_str());
    params.push_back(record.order.channel_id.empty()
                       ? nullptr
                       : record.order.channel_id.c_str());
    params.push_back(instance);
    params.push_back(created);
  }
  sql += " ON CONFLICT DO NOTHING";
  return execute(sql, params, error);
}

bool pg_database::insert_results(const std::vector<payment_result>& results,
                                 std::string& error) {
  if (results.empty())
    return true;
  constexpr int columns = 7;
  std::string sql = "INSERT INTO payment_results (pay_id, status, channel_id, channel_txn_id, "
                    "amount, finished_at, source) VALUES ";
  std::vector<std::string> texts;
  texts.reserve(results.size() * 2);  // never reallocates: params point into it
  std::vector<const char*> params;
  params.reserve(results.size() * columns);
  append_placeholders(sql, results.size(), columns);
  for (size_t row = 0; row < results.size(); ++row) {
    const auto& result = results[row];
    texts.push_back(std::to_string(result.amount_minor));
    const char* amount = texts.back().c_str();
    texts.push_back(format_rfc3339_ms(result.finished_at_ms));
    const char* finished = texts.back().c_str();
    params.push_back(result.pay_id.c_str());
    params.push_back(result.status.c_str());
    params.push_back(result.channel_id.empty() ? nullptr : result.channel_id.c_str());
    params.push_back(result.channel_txn_id.empty() ? nullptr : result.channel_txn_id.c_str());
    params.push_back(amount);
    params.push_back(finished);
    params.push_back(result.source.c_str());
  }
  sql += " ON CONFLICT DO NOTHING";
  return execute(sql, params, error);
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
