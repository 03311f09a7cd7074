#pragma once

#include <pthread.h>

#include <string>
#include <string_view>

namespace paybus {

/// Names the calling thread for `top -H`, `ps -L` and profilers (Linux keeps
/// 15 bytes). Detached actors call it from their behavior, which runs on
/// their own thread.
inline void name_this_thread(std::string_view name) {
  std::string text{name.substr(0, 15)};
  pthread_setname_np(pthread_self(), text.c_str());
}

}  // namespace paybus
