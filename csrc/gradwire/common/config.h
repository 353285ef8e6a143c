// Every environment variable the C++ core reads, read in one place, once per process.
// docs/configuration.md holds the same table for users; keep both in step.
#pragma once

#include <cstddef>
#include <string>

namespace gw {

struct Config {
  int log_level = 1;                    // GRADWIRE_LOG_LEVEL: error|warn|info|debug (or 0-3)
  std::string socket_ifname;            // GRADWIRE_SOCKET_IFNAME: interface to listen on
  std::string auth_token;               // GRADWIRE_AUTH_TOKEN: shared job secret
  std::string algo = "auto";            // GRADWIRE_ALGO: auto|ring|rd (allreduce algorithm)
  size_t ring_chunk_bytes = 256 << 10;  // GRADWIRE_RING_CHUNK_BYTES: pipelining granularity
  size_t max_frame_bytes = 4 << 20;     // GRADWIRE_MAX_FRAME_BYTES: payload bytes per frame
  double probe_seconds = 1.0;           // GRADWIRE_PROBE_SECONDS: wait for probe replies on timeout
  double handshake_seconds = 10.0;      // GRADWIRE_HANDSHAKE_SECONDS: one connection's handshake
  std::string transport = "auto";       // GRADWIRE_TRANSPORT: auto|tcp|shm (same-host peers)
  size_t shm_ring_bytes = 4 << 20;      // GRADWIRE_SHM_RING_BYTES: ring per same-host peer pair
  std::string simd = "auto";            // GRADWIRE_SIMD: auto|generic (reduction kernels)
  double spin_microseconds = 50;        // GRADWIRE_SPIN_US: busy-wait before sleeping
  size_t cma_min_bytes = 0;  // GRADWIRE_CMA_MIN_BYTES: single copy from this size (0: off)
  // GRADWIRE_SMALL_MSG_BYTES: same-host mailbox per peer pair for small allreduces (0: off)
  size_t small_msg_bytes = 4 << 10;
  // Parameter server (docs/parameter-server.md).
  size_t ps_block_elems = 1 << 16;       // GRADWIRE_PS_BLOCK_ELEMS: dense partitioning block
  std::string ps_wal_sync = "write";     // GRADWIRE_PS_WAL_SYNC: write|fdatasync
  size_t ps_wal_max_bytes = 1ull << 30;  // GRADWIRE_PS_WAL_MAX_BYTES: checkpoint beyond this
  double ps_timeout_seconds = 300;       // GRADWIRE_PS_TIMEOUT: client deadline per request
  // GRADWIRE_PS_SINGLE_COPY_MIN_BYTES: same-host payloads from this size go by single copy
  // (0: off)
  size_t ps_single_copy_min_bytes = 256 << 10;
  // GRADWIRE_PS_REPLY_IN_PLACE: 1 lets a same-host server write large pull / push_pull values
  // straight into the worker's tensor; 0 has them lent and read by the worker
  bool ps_reply_in_place = true;

  // Parsed from the environment on first use; invalid values raise InvalidArgument naming
  // the variable.
  static const Config& get();
  static Config from_env();
};

}  // namespace gw
