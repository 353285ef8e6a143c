// A byte stream to one peer: a TCP socket, or a pair of shared-memory rings for a peer on the
// same host. StreamTransport frames, matches and checks messages on top of any Channel.
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <string>

namespace gw {

class Channel {
 public:
  virtual ~Channel() = default;
  // Non-blocking. Return the bytes moved (0: nothing possible now), or -1 when the channel is
  // closed or broken, with the reason in *why.
  virtual ssize_t writev(const iovec* iov, int iovcnt, std::string* why) = 0;
  virtual ssize_t read(void* buf, size_t n, std::string* why) = 0;
  // Zero-copy reading, for channels whose bytes sit in memory (shared memory): peek() shows the
  // next readable bytes that are contiguous, in place (0: none, or not supported), and
  // consume(n) drops n of them. A reducing receive reduces straight out of the ring this way.
  virtual size_t peek(const char** data) { return 0; }
  virtual void consume(size_t n) {}
  // The socket the progress loop polls: data for TCP, liveness (EOF) for shared memory.
  virtual int fd() const = 0;
  virtual bool shared_memory() const = 0;
  // Shared memory only: true when the peer's socket says it is gone (checked after draining).
  virtual bool peer_gone(std::string* why) { return false; }
  // False only when a read now would certainly return nothing (cheap to ask).
  virtual bool may_have_input() const { return true; }
  // Shared memory only: the peer's CPU hint (shm::CpuHint), else null.
  virtual const std::atomic<int32_t>* peer_cpu() const { return nullptr; }
  // Stop sending; the peer reads what was sent, then end of stream.
  virtual void shutdown_write() = 0;
  virtual const char* kind() const = 0;
};

}  // namespace gw
