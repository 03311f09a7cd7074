#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

struct http_parser;
struct http_parser_settings;

namespace paybus {

/// One complete HTTP/1.1 request. Only the headers paybus reads are kept.
struct http_request {
  std::string method;
  std::string target;
  std::string body;
  std::string merchant;   // X-Paybus-Merchant
  std::string channel;    // X-Paybus-Channel
  std::string timestamp;  // X-Paybus-Timestamp
  std::string nonce;      // X-Paybus-Nonce
  std::string signature;  // X-Paybus-Signature
  bool auth_duplicated = false;
  bool keep_alive = true;
};

struct http_limits {
  size_t max_header_bytes = 16 * 1024;  // request line + headers
  size_t max_body_bytes = 64 * 1024;
};

/// Incremental request parser over libhttp-parser, one per connection.
/// On malformed input it stops for good and reports the status to answer
/// with (400, 411, 413 or 431).
class http_request_parser {
public:
  explicit http_request_parser(http_limits limits);
  ~http_request_parser();

  http_request_parser(const http_request_parser&) = delete;
  http_request_parser& operator=(const http_request_parser&) = delete;

  /// Parses `size` bytes, appending each completed request to `out`.
  /// Returns 0, or the error status after which the connection must close.
  int feed(const char* data, size_t size, std::vector<http_request>& out);

  /// True between a request's first byte and its last.
  bool mid_request() const {
    return mid_request_;
  }
  /// True once its headers are complete and the body is still arriving.
  bool in_body() const {
    return in_body_;
  }

private:
  friend struct http_callbacks;

  http_limits limits_;
  std::unique_ptr<http_parser> parser_;
  http_request current_;
  std::vector<http_request>* out_ = nullptr;
  std::string header_field_;
  std::string header_value_;
  bool last_was_value_ = false;
  size_t header_bytes_ = 0;
  bool mid_request_ = false;
  bool in_body_ = false;
  int error_status_ = 0;
};

/// Serializes a response. `extra_headers` are complete "Name: value\r\n" lines.
std::string http_response(int status, std::string_view content_type, std::string_view body,
                          bool keep_alive, std::string_view extra_headers = {});

/// {"error": {"code": ..., "message": ...}}
std::string error_json(std::string_view code, std::string_view message);

/// Appends `text` as a JSON string literal (quoted, escaped).
void append_json_string(std::string& out, std::string_view text);

const char* reason_phrase(int status);

}  // namespace paybus
