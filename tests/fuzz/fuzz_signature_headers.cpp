// libFuzzer: parsing and checking the four authentication headers. The input
// is split at newlines into merchant, timestamp, nonce, signature, method,
// target and body. Nothing may crash, and nothing made up may pass: a
// forged HMAC or RSA signature is refused (the chance of guessing one is nil).

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/crypto.hpp"
#include "common/signing.hpp"
#include "gateway/auth.hpp"
#include "tests/fuzz/require.hpp"

#ifndef PAYBUS_TEST_DATA
#  error "PAYBUS_TEST_DATA must name tests/data"
#endif

using paybus::fuzz::require;

namespace {

const std::unordered_map<std::string, paybus::merchant_credentials>& merchants() {
  static auto* all = [] {
    auto* out = new std::unordered_map<std::string, paybus::merchant_credentials>;
    paybus::merchant_credentials hmac;
    hmac.id = "demo";
    hmac.secret = "demo-secret";
    (*out)["demo"] = std::move(hmac);
    paybus::merchant_credentials rsa;
    rsa.id = "rsa-shop";
    rsa.rsa = true;
    std::string error;
    rsa.public_key = paybus::crypto::load_public_key(PAYBUS_TEST_DATA "/merchant.pub.pem", error);
    require(rsa.public_key != nullptr);
    (*out)["rsa-shop"] = std::move(rsa);
    return out;
  }();
  return *all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input{reinterpret_cast<const char*>(data), size};
  std::vector<std::string_view> parts;
  while (parts.size() < 6) {
    auto newline = input.find('\n');
    if (newline == std::string_view::npos)
      break;
    parts.push_back(input.substr(0, newline));
    input.remove_prefix(newline + 1);
  }
  parts.resize(6);
  std::string_view body = input;

  // The pieces on their own.
  int64_t seconds = 0;
  if (paybus::parse_timestamp(parts[1], seconds))
    require(seconds >= 0 && !parts[1].empty() && parts[1].size() <= 12);
  if (paybus::valid_nonce(parts[2]))
    require(parts[2].size() >= 16 && parts[2].size() <= 64);
  std::string_view scheme;
  std::string_view value;
  if (paybus::parse_signature_header(parts[3], scheme, value))
    require((scheme == "hmac-sha256" || scheme == "rsa-sha256") && !value.empty());
  std::string decoded;
  if (paybus::crypto::base64_decode(value, decoded))
    require(decoded.size() <= value.size());

  // The whole check, at the timestamp's own time so the window passes.
  paybus::auth_headers headers{parts[0], parts[1], parts[2], parts[3], false};
  const paybus::merchant_credentials* merchant = nullptr;
  auto failure = paybus::authenticate(
    merchants(), headers, parts[4], parts[5], body, seconds * 1000, 300,
    [](std::string_view, std::string_view) { return false; }, &merchant);
  require(failure != paybus::auth_failure::none);  // a made-up signature never passes

  // The same request signed as the merchant would: it passes, whatever the
  // method, target and body; a replay of it does not.
  int64_t when = 0;
  if (paybus::parse_timestamp(parts[1], when) && paybus::valid_nonce(parts[2])) {
    auto canonical = paybus::canonical_string(parts[4], parts[5], parts[1], parts[2], body);
    auto signature = "hmac-sha256=" + paybus::crypto::hmac_sha256_hex("demo-secret", canonical);
    paybus::auth_headers good{"demo", parts[1], parts[2], signature, false};
    require(paybus::authenticate(
              merchants(), good, parts[4], parts[5], body, when * 1000, 300,
              [](std::string_view, std::string_view) { return false; }, &merchant)
            == paybus::auth_failure::none);
    require(merchant != nullptr && merchant->id == "demo");
    require(paybus::authenticate(
              merchants(), good, parts[4], parts[5], body, when * 1000, 300,
              [](std::string_view, std::string_view) { return true; }, &merchant)
            == paybus::auth_failure::replayed_request);
  }
  return 0;
}
