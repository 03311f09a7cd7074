#pragma once

// Where a run gets a channel's statement of a day (API.md sections 4 and 7):
// `GET {url}/v1/statements/{date}` signed as every request to the channel,
// its body streamed to a temporary file while it is hashed, and used only
// once the channel's signature over that hash verifies; or a `file://`
// path, read as it is (the operator vouches for it).

#include <atomic>
#include <cstdint>
#include <string>

#include <openssl/evp.h>

namespace paybus::reconciliation {

struct statement_source {
  std::string channel_id;
  // "{url}/v1/statements/{date}" made whole, or "file:///path/{date}.csv":
  // "{date}" is replaced by the day.
  std::string url_template;
  std::string ca_file;              // https: certificates that verify the channel's
  EVP_PKEY* bus_key = nullptr;      // signs the request
  EVP_PKEY* channel_key = nullptr;  // verifies the answer
  int64_t connect_timeout_ms = 3000;
  int64_t window_seconds = 300;
  // Set when the bus stops: a download in progress is given up at once.
  const std::atomic<bool>* stopping = nullptr;
};

struct fetched_statement {
  std::string path;        // the file to read
  bool temporary = false;  // a download: remove it when done
  bool served = true;      // false: the channel has no statement of that day (404)
  std::string sha256;      // of the body, hex; empty for a file (hashed as it is read)
};

/// Gets the statement of `date` ("YYYY-MM-DD"); a download goes to
/// `download_path`. False with `error` when it cannot be had: not
/// reachable, refused, a signature that does not verify (the file is
/// removed), or not served (`out.served` false, a 404).
bool fetch_statement(const statement_source& source, const std::string& date,
                     const std::string& download_path, fetched_statement& out, std::string& error);

/// The URL of the statement of `date` under `url_template`.
std::string statement_url(const std::string& url_template, const std::string& date);

}  // namespace paybus::reconciliation
