// libFuzzer: the HTTP request path. Bytes arrive in pieces of sizes the
// input chooses, as they would from a socket; the parser must never crash,
// must keep to its limits, and once it refuses it must keep refusing.

#include <cstdint>
#include <vector>

#include "gateway/http.hpp"
#include "tests/fuzz/require.hpp"

using paybus::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1)
    return 0;
  paybus::http_limits limits;
  limits.max_header_bytes = 2048;
  limits.max_body_bytes = 4096;
  paybus::http_request_parser parser{limits};
  std::vector<paybus::http_request> requests;
  // The first byte picks the piece size (1 to 256 bytes).
  size_t piece = static_cast<size_t>(data[0]) + 1;
  const char* bytes = reinterpret_cast<const char*>(data + 1);
  size_t left = size - 1;
  int status = 0;
  while (left > 0) {
    size_t n = left < piece ? left : piece;
    int now = parser.feed(bytes, n, requests);
    if (status != 0)
      require(now == status);  // a refusal is final
    status = now;
    require(status == 0 || status == 400 || status == 411 || status == 413 || status == 431);
    bytes += n;
    left -= n;
  }
  for (const auto& request : requests) {
    require(!request.method.empty());
    require(request.body.size() <= limits.max_body_bytes);
    require(request.target.size() <= limits.max_header_bytes);
    // Answering it must work whatever it held.
    auto response = paybus::http_response(400, "application/json",
                                          paybus::error_json("invalid_field", request.target),
                                          request.keep_alive);
    require(response.rfind("HTTP/1.1 400", 0) == 0);
  }
  return 0;
}
