#pragma once

#include <cstdlib>

namespace paybus::fuzz {

/// A broken invariant is a crash libFuzzer reports and keeps the input of.
inline void require(bool condition) {
  if (!condition)
    std::abort();
}

}  // namespace paybus::fuzz
