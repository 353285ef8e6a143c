#include "gradwire/common/config.h"

#include <cstdlib>
#include <string>

#include "gradwire/common/error.h"

namespace gw {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return (v && *v) ? v : nullptr;
}

size_t env_bytes(const char* name, size_t def, bool zero_ok = false) {
  const char* v = env(name);
  if (!v) return def;
  char* end = nullptr;
  unsigned long long n = std::strtoull(v, &end, 10);
  std::string suffix(end ? end : "");
  unsigned long long mult = 1;
  if (suffix == "K" || suffix == "k")
    mult = 1ull << 10;
  else if (suffix == "M" || suffix == "m")
    mult = 1ull << 20;
  else if (suffix == "G" || suffix == "g")
    mult = 1ull << 30;
  else
    GW_CHECK_ARG(suffix.empty(), name, "='", v, "' is not a byte count (e.g. 65536, 64K, 4M)");
  GW_CHECK_ARG(end != v && (n > 0 || zero_ok), name, "='", v, "' must be a positive byte count");
  return size_t(n * mult);
}

double env_seconds(const char* name, double def) {
  const char* v = env(name);
  if (!v) return def;
  char* end = nullptr;
  double d = std::strtod(v, &end);
  GW_CHECK_ARG(end != v && *end == '\0' && d >= 0, name, "='", v, "' must be a number of seconds");
  return d;
}

int parse_log_level(const char* v) {
  std::string s(v);
  if (s == "error" || s == "ERROR" || s == "0") return 0;
  if (s == "warn" || s == "WARN" || s == "warning" || s == "1") return 1;
  if (s == "info" || s == "INFO" || s == "2") return 2;
  if (s == "debug" || s == "DEBUG" || s == "3") return 3;
  GW_THROW(InvalidArgument, "GRADWIRE_LOG_LEVEL='", v, "' must be one of error, warn, info, debug");
}

}  // namespace

Config Config::from_env() {
  Config c;
  if (const char* v = env("GRADWIRE_LOG_LEVEL")) c.log_level = parse_log_level(v);
  if (const char* v = env("GRADWIRE_SOCKET_IFNAME")) c.socket_ifname = v;
  if (const char* v = env("GRADWIRE_AUTH_TOKEN")) c.auth_token = v;
  if (const char* v = env("GRADWIRE_ALGO")) {
    c.algo = v;
    GW_CHECK_ARG(c.algo == "auto" || c.algo == "ring" || c.algo == "rd" || c.algo == "hd",
                 "GRADWIRE_ALGO='", v, "' must be one of auto, ring, rd, hd");
  }
  c.ring_chunk_bytes = env_bytes("GRADWIRE_RING_CHUNK_BYTES", c.ring_chunk_bytes);
  c.max_frame_bytes = env_bytes("GRADWIRE_MAX_FRAME_BYTES", c.max_frame_bytes);
  // Frames must cut messages at element boundaries (reduce-on-receive relies on it).
  GW_CHECK_ARG(c.max_frame_bytes >= 64, "GRADWIRE_MAX_FRAME_BYTES must be at least 64");
  c.max_frame_bytes -= c.max_frame_bytes % 64;
  c.probe_seconds = env_seconds("GRADWIRE_PROBE_SECONDS", c.probe_seconds);
  c.handshake_seconds = env_seconds("GRADWIRE_HANDSHAKE_SECONDS", c.handshake_seconds);
  GW_CHECK_ARG(c.handshake_seconds > 0, "GRADWIRE_HANDSHAKE_SECONDS must be positive");
  if (const char* v = env("GRADWIRE_TRANSPORT")) {
    c.transport = v;
    GW_CHECK_ARG(c.transport == "auto" || c.transport == "tcp" || c.transport == "shm",
                 "GRADWIRE_TRANSPORT='", v, "' must be one of auto, tcp, shm");
  }
  c.shm_ring_bytes = env_bytes("GRADWIRE_SHM_RING_BYTES", c.shm_ring_bytes);
  c.spin_microseconds = env_seconds("GRADWIRE_SPIN_US", c.spin_microseconds);
  c.cma_min_bytes = env_bytes("GRADWIRE_CMA_MIN_BYTES", c.cma_min_bytes, true);
  c.small_msg_bytes = env_bytes("GRADWIRE_SMALL_MSG_BYTES", c.small_msg_bytes, true);
  GW_CHECK_ARG(c.small_msg_bytes <= (1u << 20), "GRADWIRE_SMALL_MSG_BYTES must be at most 1M");
  c.ps_block_elems = env_bytes("GRADWIRE_PS_BLOCK_ELEMS", c.ps_block_elems);
  if (const char* v = env("GRADWIRE_PS_WAL_SYNC")) {
    c.ps_wal_sync = v;
    GW_CHECK_ARG(c.ps_wal_sync == "write" || c.ps_wal_sync == "fdatasync", "GRADWIRE_PS_WAL_SYNC='",
                 v, "' must be write or fdatasync");
  }
  c.ps_wal_max_bytes = env_bytes("GRADWIRE_PS_WAL_MAX_BYTES", c.ps_wal_max_bytes);
  c.ps_timeout_seconds = env_seconds("GRADWIRE_PS_TIMEOUT", c.ps_timeout_seconds);
  GW_CHECK_ARG(c.ps_timeout_seconds > 0, "GRADWIRE_PS_TIMEOUT must be positive");
  c.ps_single_copy_min_bytes =
      env_bytes("GRADWIRE_PS_SINGLE_COPY_MIN_BYTES", c.ps_single_copy_min_bytes, true);
  if (const char* v = env("GRADWIRE_PS_REPLY_IN_PLACE")) {
    std::string s(v);
    GW_CHECK_ARG(s == "0" || s == "1", "GRADWIRE_PS_REPLY_IN_PLACE='", v, "' must be 0 or 1");
    c.ps_reply_in_place = s == "1";
  }
  if (const char* v = env("GRADWIRE_SIMD")) {
    c.simd = v;
    GW_CHECK_ARG(c.simd == "auto" || c.simd == "generic", "GRADWIRE_SIMD='", v,
                 "' must be auto or generic");
  }
  return c;
}

const Config& Config::get() {
  static const Config config = from_env();
  return config;
}

}  // namespace gw
