// Minimal leveled logging to stderr. The level comes from Config (GRADWIRE_LOG_LEVEL).
#pragma once

#include <string>

#include "gradwire/common/error.h"

namespace gw {

enum class LogLevel : int { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

bool log_enabled(LogLevel level);
void log_line(LogLevel level, const std::string& msg);

}  // namespace gw

#define GW_LOG(level, ...)                                           \
  do {                                                               \
    if (::gw::log_enabled(::gw::LogLevel::level)) {                  \
      ::gw::log_line(::gw::LogLevel::level, ::gw::str(__VA_ARGS__)); \
    }                                                                \
  } while (0)
