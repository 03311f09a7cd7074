// libFuzzer: configuration loading. Any TOML text (or not TOML at all) either
// loads into settings that keep the documented limits or is refused with one
// line naming what is wrong; it never crashes.

#include <cstdint>
#include <string>

#include "config/settings.hpp"
#include "tests/fuzz/require.hpp"

using paybus::fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text{reinterpret_cast<const char*>(data), size};
  paybus::settings out;
  std::string error;
  if (!paybus::parse_settings(text, "fuzz.toml", {}, out, error)) {
    require(!error.empty());
    require(error.find('\n') == std::string::npos);
    return 0;
  }
  require(!out.data_dir.empty());
  require(out.store_max_batch_writes >= 1 && out.store_max_batch_writes <= 100'000);
  require(out.store_min_free_bytes >= 0);
  return 0;
}
