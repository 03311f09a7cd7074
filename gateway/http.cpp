#include "gateway/http.hpp"

#include <climits>
#include <cstring>
#include <strings.h>

#include <http_parser.h>

namespace paybus {

namespace {

bool equals_ignore_case(const std::string& a, const char* b) {
  return strcasecmp(a.c_str(), b) == 0;
}

}  // namespace

struct http_callbacks {
  static http_request_parser& self(::http_parser* parser) {
    return *static_cast<http_request_parser*>(parser->data);
  }

  // -1, not 1: from on_headers_complete a 1 means "no body", not an error.
  static int fail(http_request_parser& p, int status) {
    p.error_status_ = status;
    return -1;
  }

  static bool count_header_bytes(http_request_parser& p, size_t length) {
    p.header_bytes_ += length;
    return p.header_bytes_ <= p.limits_.max_header_bytes;
  }

  static void finish_header(http_request_parser& p) {
    if (p.header_field_.empty())
      return;
    auto assign = [&](std::string& slot) {
      if (!slot.empty())
        p.current_.auth_duplicated = true;
      slot = p.header_value_;
    };
    const auto& name = p.header_field_;
    if (name.size() > 9 && strncasecmp(name.c_str(), "x-paybus-", 9) == 0) {
      if (equals_ignore_case(name, "x-paybus-merchant"))
        assign(p.current_.merchant);
      else if (equals_ignore_case(name, "x-paybus-channel"))
        assign(p.current_.channel);
      else if (equals_ignore_case(name, "x-paybus-timestamp"))
        assign(p.current_.timestamp);
      else if (equals_ignore_case(name, "x-paybus-nonce"))
        assign(p.current_.nonce);
      else if (equals_ignore_case(name, "x-paybus-signature"))
        assign(p.current_.signature);
    }
    p.header_field_.clear();
    p.header_value_.clear();
  }

  static int on_message_begin(::http_parser* parser) {
    auto& p = self(parser);
    p.current_ = http_request{};
    p.header_field_.clear();
    p.header_value_.clear();
    p.last_was_value_ = false;
    p.header_bytes_ = 0;
    p.mid_request_ = true;
    p.in_body_ = false;
    return 0;
  }

  static int on_url(::http_parser* parser, const char* at, size_t length) {
    auto& p = self(parser);
    if (!count_header_bytes(p, length))
      return fail(p, 431);
    p.current_.target.append(at, length);
    return 0;
  }

  static int on_header_field(::http_parser* parser, const char* at, size_t length) {
    auto& p = self(parser);
    if (!count_header_bytes(p, length))
      return fail(p, 431);
    if (p.last_was_value_) {
      finish_header(p);
      p.last_was_value_ = false;
    }
    p.header_field_.append(at, length);
    return 0;
  }

  static int on_header_value(::http_parser* parser, const char* at, size_t length) {
    auto& p = self(parser);
    if (!count_header_bytes(p, length))
      return fail(p, 431);
    p.header_value_.append(at, length);
    p.last_was_value_ = true;
    return 0;
  }

  static int on_headers_complete(::http_parser* parser) {
    auto& p = self(parser);
    finish_header(p);
    p.current_.method = http_method_str(static_cast<http_method>(parser->method));
    bool chunked = (parser->flags & F_CHUNKED) != 0;
    bool has_length = (parser->flags & F_CONTENTLENGTH) != 0;
    if (parser->method == HTTP_POST && !chunked && !has_length)
      return fail(p, 411);
    if (has_length && parser->content_length > p.limits_.max_body_bytes)
      return fail(p, 413);
    p.in_body_ = true;
    return 0;
  }

  static int on_body(::http_parser* parser, const char* at, size_t length) {
    auto& p = self(parser);
    if (p.current_.body.size() + length > p.limits_.max_body_bytes)
      return fail(p, 413);
    p.current_.body.append(at, length);
    return 0;
  }

  static int on_message_complete(::http_parser* parser) {
    auto& p = self(parser);
    p.current_.keep_alive = http_should_keep_alive(parser) != 0;
    p.out_->push_back(std::move(p.current_));
    p.current_ = http_request{};
    p.mid_request_ = false;
    p.in_body_ = false;
    return 0;
  }

  static const http_parser_settings& settings() {
    static const http_parser_settings value = [] {
      http_parser_settings s;
      http_parser_settings_init(&s);
      s.on_message_begin = on_message_begin;
      s.on_url = on_url;
      s.on_header_field = on_header_field;
      s.on_header_value = on_header_value;
      s.on_headers_complete = on_headers_complete;
      s.on_body = on_body;
      s.on_message_complete = on_message_complete;
      return s;
    }();
    return value;
  }
};

http_request_parser::http_request_parser(http_limits limits)
  : limits_(limits), parser_(std::make_unique<http_parser>()) {
  http_parser_init(parser_.get(), HTTP_REQUEST);
  parser_->data = this;
}

http_request_parser::~http_request_parser() = default;

int http_request_parser::feed(const char* data, size_t size, std::vector<http_request>& out) {
  if (error_status_ != 0)
    return error_status_;
  out_ = &out;
  size_t parsed = http_parser_execute(parser_.get(), &http_callbacks::settings(), data, size);
  out_ = nullptr;
  if (error_status_ != 0)
    return error_status_;
  if (parser_->upgrade) {
    error_status_ = 400;  // no protocol upgrades here
    return error_status_;
  }
  if (parsed != size || HTTP_PARSER_ERRNO(parser_.get()) != HPE_OK) {
    error_status_ = 400;
    return error_status_;
  }
  if (mid_request_ && !in_body_ && header_bytes_ > limits_.max_header_bytes) {
    error_status_ = 431;
    return error_status_;
  }
  return 0;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 202:
      return "Accepted";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 413:
      return "Payload Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string http_response(int status, std::string_view content_type, std::string_view body,
                          bool keep_alive, std::string_view extra_headers) {
  std::string out;
  out.reserve(160 + body.size() + extra_headers.size());
  out.append("HTTP/1.1 ");
  out.append(std::to_string(status));
  out.push_back(' ');
  out.append(reason_phrase(status));
  out.append("\r\nContent-Type: ");
  out.append(content_type);
  out.append("\r\nContent-Length: ");
  out.append(std::to_string(body.size()));
  out.append(keep_alive ? "\r\nConnection: keep-alive\r\n" : "\r\nConnection: close\r\n");
  out.append(extra_headers);
  out.append("\r\n");
  out.append(body);
  return out;
}

void append_json_string(std::string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out.append("\\u00");
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xf]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  out.push_back('"');
}

std::string error_json(std::string_view code, std::string_view message) {
  std::string out = "{\"error\":{\"code\":";
  append_json_string(out, code);
  out.append(",\"message\":");
  append_json_string(out, message);
  out.append("}}");
  return out;
}

}  // namespace paybus
