// One authenticated parameter-server connection: whole PS messages as single frames over a
// blocking socket. Sends are serialized by a mutex (many threads reply or request on one
// connection); one thread reads.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <vector>

#include "gradwire/ps/single_copy.h"
#include "gradwire/transport/frame.h"
#include "gradwire/transport/tcp/socket.h"

namespace gw {
namespace ps {

class Connection {
 public:
  // A send that cannot make progress for `send_timeout_seconds` (the peer stopped reading)
  // fails and closes the connection, so no sender blocks forever.
  Connection(tcp::Socket s, int my_rank, int peer_rank, std::string peer_name,
             double send_timeout_seconds);

  // Sends header | prefix (meta length, `flags`) | meta | data segments as one frame; throws
  // PeerError when the connection is gone or stalled.
  void send(FrameType type, uint64_t seq, uint32_t tag, const std::string& meta,
            const std::vector<iovec>& data = {}, uint32_t flags = 0);
  // Reads and validates the next header; false on an orderly close between frames.
  bool read_header(FrameType expected, FrameHeader* h);
  void read_exact(void* p, size_t n);
  // Bounds each later receive call (0: no bound); an expired one fails with PeerError.
  void set_receive_timeout(double seconds);
  // Unblocks the reader and fails later sends.
  void shutdown();
  bool closed() const { return closed_.load(); }
  const std::string& peer_name() const { return peer_name_; }
  int peer_rank() const { return peer_rank_; }
  // Set once by the attach exchange, before the connection is shared between threads.
  void set_single_copy(const SingleCopyCaps& caps) { caps_ = caps; }
  const SingleCopyCaps& single_copy() const { return caps_; }

 private:
  tcp::Socket sock_;
  int my_rank_, peer_rank_;
  std::string peer_name_;
  std::mutex send_mu_;
  std::atomic<bool> closed_{false};
  SingleCopyCaps caps_;
};

}  // namespace ps
}  // namespace gw
