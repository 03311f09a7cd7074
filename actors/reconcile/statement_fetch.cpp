#include "actors/reconcile/statement_fetch.hpp"

#include <cstdio>
#include <filesystem>
#include <memory>

#include <curl/curl.h>

#include "common/clock.hpp"
#include "common/crypto.hpp"
#include "common/signing.hpp"

namespace paybus::reconciliation {

namespace {

constexpr uint64_t max_statement_bytes = 4ull << 30;

struct download {
  std::FILE* file = nullptr;
  crypto::sha256_stream hash;
  uint64_t bytes = 0;
  bool too_big = false;
  bool write_failed = false;
  received_signature signed_by;
  int64_t answered_ms = 0;  // when the headers came: the signature's moment
};

size_t on_body(char* data, size_t size, size_t count, void* out) {
  auto& into = *static_cast<download*>(out);
  size_t length = size * count;
  into.bytes += length;
  if (into.bytes > max_statement_bytes) {
    into.too_big = true;
    return 0;  // libcurl stops
  }
  if (std::fwrite(data, 1, length, into.file) != length) {
    into.write_failed = true;
    return 0;
  }
  into.hash.update({data, length});
  return length;
}

int on_progress(void* stopping, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* flag = static_cast<const std::atomic<bool>*>(stopping);
  return flag != nullptr && flag->load() ? 1 : 0;  // non-zero: libcurl gives up
}

size_t on_header(char* data, size_t size, size_t count, void* out) {
  auto& into = *static_cast<download*>(out);
  if (into.answered_ms == 0)
    into.answered_ms = unix_now_ms();
  take_signature_header({data, size * count}, into.signed_by);
  return size * count;
}

struct curl_deleter {
  void operator()(CURL* easy) const {
    curl_easy_cleanup(easy);
  }
  void operator()(CURLU* url) const {
    curl_url_cleanup(url);
  }
  void operator()(curl_slist* list) const {
    curl_slist_free_all(list);
  }
};

/// The path and query of `url`: what the request's signature covers.
bool request_target(const std::string& url, std::string& target) {
  std::unique_ptr<CURLU, curl_deleter> parsed{curl_url()};
  char* path = nullptr;
  char* query = nullptr;
  if (!parsed || curl_url_set(parsed.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK
      || curl_url_get(parsed.get(), CURLUPART_PATH, &path, 0) != CURLUE_OK)
    return false;
  target = path;
  curl_free(path);
  if (curl_url_get(parsed.get(), CURLUPART_QUERY, &query, 0) == CURLUE_OK) {
    target += "?";
    target += query;
    curl_free(query);
  }
  return true;
}

}  // namespace

std::string statement_url(const std::string& url_template, const std::string& date) {
  std::string url = url_template;
  for (auto at = url.find("{date}"); at != std::string::npos; at = url.find("{date}", at))
    url.replace(at, 6, date);
  return url;
}

bool fetch_statement(const statement_source& source, const std::string& date,
                     const std::string& download_path, fetched_statement& out, std::string& error) {
  auto url = statement_url(source.url_template, date);
  out = fetched_statement{};
  if (url.rfind("file://", 0) == 0) {
    out.path = url.substr(7);
    std::error_code failed;
    if (!std::filesystem::is_regular_file(out.path, failed)) {
      out.served = std::filesystem::exists(out.path, failed);  // there, but not a file
      error = "no statement file " + out.path;
      return false;
    }
    return true;
  }
  std::string target;
  if (!request_target(url, target)) {
    error = "not a URL: " + url;
    return false;
  }
  std::unique_ptr<CURL, curl_deleter> easy{curl_easy_init()};
  download into;
  into.file = std::fopen(download_path.c_str(), "wb");
  if (!easy || into.file == nullptr) {
    error = "cannot write " + download_path;
    if (into.file != nullptr)
      std::fclose(into.file);
    return false;
  }
  auto signature = sign_rsa(source.bus_key, "GET", target, "", unix_now_ms());
  std::unique_ptr<curl_slist, curl_deleter> headers;
  for (const auto& line :
       {"X-Paybus-Channel: " + source.channel_id, "X-Paybus-Timestamp: " + signature.timestamp,
        "X-Paybus-Nonce: " + signature.nonce, "X-Paybus-Signature: " + signature.signature})
    headers.reset(curl_slist_append(headers.release(), line.c_str()));
  curl_easy_setopt(easy.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(easy.get(), CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(easy.get(), CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(easy.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy.get(), CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(source.connect_timeout_ms));
  // A statement may be large: no total timeout, but one that stalls (less
  // than a byte a second for a minute) is given up.
  curl_easy_setopt(easy.get(), CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(easy.get(), CURLOPT_LOW_SPEED_TIME, 60L);
  if (!source.ca_file.empty())
    curl_easy_setopt(easy.get(), CURLOPT_CAINFO, source.ca_file.c_str());
  curl_easy_setopt(easy.get(), CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(easy.get(), CURLOPT_WRITEDATA, &into);
  curl_easy_setopt(easy.get(), CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(easy.get(), CURLOPT_HEADERDATA, &into);
  curl_easy_setopt(easy.get(), CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(easy.get(), CURLOPT_XFERINFODATA, source.stopping);
  curl_easy_setopt(easy.get(), CURLOPT_NOPROGRESS, 0L);
  auto code = curl_easy_perform(easy.get());
  bool closed = std::fclose(into.file) == 0;
  long status = 0;
  curl_easy_getinfo(easy.get(), CURLINFO_RESPONSE_CODE, &status);
  auto fail = [&](std::string why) {
    std::error_code ignored;
    std::filesystem::remove(download_path, ignored);
    error = std::move(why);
    return false;
  };
  if (into.too_big)
    return fail("the statement is larger than 4 GiB");
  if (into.write_failed || !closed)
    return fail("cannot write " + download_path + " (is the disk full?)");
  if (code == CURLE_ABORTED_BY_CALLBACK)
    return fail("the bus is stopping");
  if (code != CURLE_OK)
    return fail(std::string{"cannot fetch "} + url + ": " + curl_easy_strerror(code));
  if (status == 404) {
    out.served = false;
    return fail("the channel serves no statement of " + date + " (HTTP 404)");
  }
  if (status != 200)
    return fail("the channel answered HTTP " + std::to_string(status) + " for " + url);
  out.sha256 = into.hash.hex();
  const auto& by = into.signed_by;
  if (by.channel != source.channel_id
      || !verify_rsa_message_hashed(source.channel_key, "GET", target, by.timestamp, by.nonce,
                                    by.signature, out.sha256, into.answered_ms,
                                    source.window_seconds))
    return fail("the statement's signature does not verify (channel " + source.channel_id + ", "
                + url + "): nothing of it is used");
  out.path = download_path;
  out.temporary = true;
  return true;
}

}  // namespace paybus::reconciliation
