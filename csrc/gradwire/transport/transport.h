// The transport seam: everything collectives need to move bytes between ranks. A transport
// instance belongs to one communicator and is driven by one thread at a time (the thread that
// executes ops), so it needs no locks. Algorithms post sends/receives, then wait on them; waiting
// drives all of the transport's IO, so unexpected messages and control frames from any peer are
// handled while an op waits.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gradwire/transport/frame.h"

namespace gw {

using Clock = std::chrono::steady_clock;

// Milliseconds left until `t` (0 once it has passed), as poll() and futex waits take them.
inline int ms_until(Clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now()).count();
  return ms < 0 ? 0 : int(ms < (1 << 30) ? ms : (1 << 30));
}

// "[1, 3]": rank lists in error messages.
inline std::string rank_list(const std::vector<int>& ranks) {
  std::string s = "[";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s + "]";
}

// Completion flag of one posted send or receive. Owned by the algorithm; must outlive the wait.
struct Request {
  bool done = false;
};

class Transport {
 public:
  virtual ~Transport() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;

  // Marks the op every later frame belongs to until end_op(); the deadline bounds every wait.
  virtual void begin_op(uint64_t seq, const OpFingerprint& fp, Clock::time_point deadline) = 0;
  virtual void end_op() = 0;

  // Post a message; the buffer must stay valid and unmodified until the request is done.
  virtual void isend(int peer, const MsgKey& key, const OpFingerprint& fp, const void* data,
                     size_t bytes, Request* req) = 0;
  // Post a receive for exactly `bytes` bytes of the message `key` from `peer`.
  virtual void irecv(int peer, const MsgKey& key, const OpFingerprint& fp, void* data, size_t bytes,
                     Request* req) = 0;

  // Like irecv, but reduces the payload into `data` (data[i] = data[i] op payload[i]) as it
  // arrives, with no staging copy of the whole message.
  virtual void irecv_reduce(int peer, const MsgKey& key, const OpFingerprint& fp, void* data,
                            size_t bytes, DType dtype, ReduceOp op, Request* req) = 0;

  // Drives IO until req is done. Throws TimeoutError past the op deadline, PeerError when a peer
  // fails, MismatchError when a peer runs a different op. After any throw the transport is
  // aborted: every later call throws the same error.
  virtual void wait(Request* req) = 0;

  // Drives IO between ops (point-to-point messages in flight): one pass over every channel, then
  // spins and sleeps until something moves or max_wait_ms pass. Throws like wait() when a peer
  // fails or an abort was requested; has no deadline of its own.
  virtual void progress_idle(int max_wait_ms) = 0;
  // True when a message `key` from `peer` has begun to arrive and no receive is posted for it
  // (how a receive from any source finds its sender).
  virtual bool has_unexpected(int peer, const MsgKey& key) const = 0;

  // Fails the transport: peers are told why (best effort) and all connections close.
  // Executing thread only.
  virtual void abort(const std::string& reason) = 0;
  // Thread-safe: the executing thread aborts with this reason at its next wait or op.
  virtual void request_abort(const std::string& reason) = 0;

  // True when every peer is reached over shared memory (picks the cost model).
  virtual bool all_peers_local() const = 0;

  // Small messages through same-host mailboxes (docs/wire-protocol.md, "Mailboxes"): one
  // message in flight per ordered pair of ranks, copied in by the sender and consumed by the
  // receiver, with no frames, queues or requests. mail_bytes() is the largest payload they
  // carry, the same on every rank of the communicator; 0 when mailboxes cannot be used (a peer
  // on another host, or turned off), and then the two calls below must not be made.
  virtual size_t mail_bytes() const { return 0; }
  // Copies the message into the peer's mailbox; waits only while the peer has not yet taken
  // this rank's previous one. The data may change as soon as this returns.
  virtual void mail_send(int peer, const MsgKey& key, const OpFingerprint& fp, const void* data,
                         size_t bytes) = 0;
  // Waits for the peer's next message, which must be `key` of op `fp` with `bytes` bytes (else
  // MismatchError), and copies it into `data`, or reduces it into `data` (data[i] = data[i] op
  // payload[i]) when `reduce`. Fails like wait() on timeouts, dead peers and aborts.
  virtual void mail_recv(int peer, const MsgKey& key, const OpFingerprint& fp, void* data,
                         size_t bytes, bool reduce, DType dtype, ReduceOp op) = 0;

  // Bytes moved so far, for stats.
  virtual uint64_t bytes_sent() const = 0;
  virtual uint64_t bytes_received() const = 0;
  // Of bytes_received, those read straight from a same-host sender's memory (single copy).
  virtual uint64_t bytes_single_copy() const { return 0; }
  // Messages sent through mailboxes.
  virtual uint64_t mail_messages() const { return 0; }
};

}  // namespace gw
