#include "gradwire/common/logging.h"

#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>

#include "gradwire/common/config.h"

namespace gw {

bool log_enabled(LogLevel level) { return int(level) <= Config::get().log_level; }

void log_line(LogLevel level, const std::string& msg) {
  static std::mutex mu;
  static const char* names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
  auto now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch());
  std::lock_guard<std::mutex> lock(mu);
  fprintf(stderr, "[gradwire %s pid=%d t=%.3f] %s\n", names[int(level)], int(getpid()), now.count(),
          msg.c_str());
  fflush(stderr);
}

}  // namespace gw
