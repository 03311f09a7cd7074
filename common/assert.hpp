#pragma once

// Invariants that must hold in every build, release included (NDEBUG does
// not turn these off): a broken one means the money logic is wrong, and the
// process stops before it writes anything more.

#include <cstdio>
#include <cstdlib>

#define PAYBUS_ASSERT(condition, what)                                                             \
  do {                                                                                             \
    if (!(condition)) {                                                                            \
      std::fprintf(stderr, "paybus: invariant broken at %s:%d: %s (%s)\n", __FILE__, __LINE__,     \
                   what, #condition);                                                              \
      std::abort();                                                                                \
    }                                                                                              \
  } while (false)
