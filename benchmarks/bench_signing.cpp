// RSA-2048 signing as the bus and the simulator do it, beside what
// `openssl speed rsa2048` times (a raw private-key operation on a digest with
// a reused context), so the cost of the layers between them can be seen.
//   build/benchmarks/paybus-bench-signing [--benchmark_filter=REGEX]

#include <time.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <thread>

#include "common/crypto.hpp"
#include "common/signing.hpp"

namespace {

using paybus::crypto::pkey_ptr;

pkey_ptr make_key() {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  if (key == nullptr)
    std::abort();
  return pkey_ptr{key, paybus::crypto::pkey_deleter{}};
}

const pkey_ptr& shared_key() {
  static pkey_ptr key = make_key();
  return key;
}

const std::string body
  = R"({"pay_id":"0191a2b3c4d5e6f70000000000000001","amount":1999,"currency":"CNY",)"
    R"("subject":"order A-1001","notify_url":"http://127.0.0.1:8080/v1/channels/sim-a/notify"})";

/// The whole of a request's signature: fresh nonce, canonical string, SHA-256,
/// RSA, base64. One key shared by every thread, as the bus's signers share
/// it (each thread signs through its own context and copy of the key).
void sign_request(benchmark::State& state) {
  for (auto _ : state)
    benchmark::DoNotOptimize(
      paybus::sign_rsa(shared_key().get(), "POST", "/v1/pay", body, 1'790'000'000'000));
}
BENCHMARK(sign_request)->Threads(1)->Threads(2)->UseRealTime();

/// What `openssl speed rsa2048` times: a private-key operation on a ready
/// digest with one context reused.
void raw_private_key_operation(benchmark::State& state) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(shared_key().get(), nullptr);
  EVP_PKEY_sign_init(ctx);
  EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
  EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256());
  unsigned char digest[32] = {1, 2, 3};
  unsigned char signature[256];
  for (auto _ : state) {
    size_t size = sizeof(signature);
    if (EVP_PKEY_sign(ctx, signature, &size, digest, sizeof(digest)) != 1)
      state.SkipWithError("EVP_PKEY_sign failed");
    benchmark::DoNotOptimize(signature);
  }
  EVP_PKEY_CTX_free(ctx);
}
BENCHMARK(raw_private_key_operation)->Threads(1)->Threads(2)->UseRealTime();

/// A private-key operation that follows other work on the same thread, as
/// in the bus and the simulator, where a signature comes between HTTP,
/// JSON and the store's work (or after a wait for the next request): the
/// first argument is the microseconds of that work before each signature,
/// the second says what it is (0: integer arithmetic in registers, 1: a
/// sleep). Only the signature is timed. On this machine's Xeon with
/// AVX-512 IFMA, which OpenSSL 3 uses for RSA-2048, a signature after a
/// millisecond of either costs far more CPU than one straight after another
/// (the benchmark diary, sitting 11).
void private_key_operation_after(benchmark::State& state) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new(shared_key().get(), nullptr);
  EVP_PKEY_sign_init(ctx);
  EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING);
  EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256());
  unsigned char digest[32] = {1, 2, 3};
  unsigned char signature[256];
  const auto gap = std::chrono::microseconds{state.range(0)};
  const bool sleeps = state.range(1) == 1;
  uint64_t mix = 1;
  for (auto _ : state) {
    state.PauseTiming();
    if (sleeps && gap.count() > 0)
      std::this_thread::sleep_for(gap);
    else
      for (auto until = std::chrono::steady_clock::now() + gap;
           std::chrono::steady_clock::now() < until;)
        for (int i = 0; i < 256; ++i)
          mix = mix * 6364136223846793005u + 1442695040888963407u;
    benchmark::DoNotOptimize(mix);
    state.ResumeTiming();
    size_t size = sizeof(signature);
    if (EVP_PKEY_sign(ctx, signature, &size, digest, sizeof(digest)) != 1)
      state.SkipWithError("EVP_PKEY_sign failed");
    benchmark::DoNotOptimize(signature);
  }
  EVP_PKEY_CTX_free(ctx);
}
BENCHMARK(private_key_operation_after)
  ->ArgNames({"us", "sleep"})
  ->Args({0, 0})
  ->Args({100, 0})
  ->Args({1000, 0})
  ->Args({1000, 1});

/// A channel answer's verification (public key), for scale.
void verify_answer(benchmark::State& state) {
  auto headers = paybus::sign_rsa(shared_key().get(), "POST", "/v1/pay", body, 1'790'000'000'000);
  for (auto _ : state)
    benchmark::DoNotOptimize(
      paybus::verify_rsa_message(shared_key().get(), "POST", "/v1/pay", headers.timestamp,
                                 headers.nonce, headers.signature, body, 1'790'000'000'000, 300));
}
BENCHMARK(verify_answer)->Threads(1)->UseRealTime();

/// What counting a signature's CPU adds to it (crypto.cpp reads the thread's
/// CPU clock before and after each private-key operation): one read.
void thread_cpu_clock(benchmark::State& state) {
  timespec now{};
  for (auto _ : state) {
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
    benchmark::DoNotOptimize(now);
  }
}
BENCHMARK(thread_cpu_clock);

/// A merchant request's HMAC-SHA256 (what the ingress checks on every
/// create), with a 32-character secret: longer than a string holds in
/// itself, so a copy of it would cost an allocation.
void merchant_hmac(benchmark::State& state) {
  const std::string secret = "demo-secret-0123456789abcdefghijk";
  for (auto _ : state)
    benchmark::DoNotOptimize(paybus::crypto::hmac_sha256_hex(secret, body));
}
BENCHMARK(merchant_hmac)->Threads(1)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
