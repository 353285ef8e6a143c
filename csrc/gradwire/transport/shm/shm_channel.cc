#include "gradwire/transport/shm/shm_channel.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "gradwire/common/error.h"

namespace gw {
namespace shm {

ShmChannel::ShmChannel(tcp::Socket sock, Ring in, Ring out, Doorbell* peer_bell,
                       std::shared_ptr<Segment> peer_segment)
    : sock_(std::move(sock)),
      in_(in),
      out_(out),
      peer_bell_(peer_bell),
      peer_segment_(std::move(peer_segment)) {
  sock_.set_nonblocking(true);
}

ssize_t ShmChannel::writev(const iovec* iov, int iovcnt, std::string* why) {
  if (write_closed_) {
    *why = "channel closed for writing";
    return -1;
  }
  size_t n = out_.write(iov, iovcnt);
  size_t total = 0;
  for (int i = 0; i < iovcnt; ++i) total += iov[i].iov_len;
  if (n < total) {
    // Full: ask the reader to ring us when it frees space, then look once more, in case it
    // freed space before it could see the flag.
    out_.header()->writer_waiting.store(1, std::memory_order_seq_cst);
    if (out_.free_space() > 0) {
      iovec rest[8];
      int cnt = 0;
      size_t skip = n;
      for (int i = 0; i < iovcnt && cnt < 8; ++i) {
        if (skip >= iov[i].iov_len) {
          skip -= iov[i].iov_len;
          continue;
        }
        rest[cnt++] = {static_cast<char*>(iov[i].iov_base) + skip, iov[i].iov_len - skip};
        skip = 0;
      }
      n += out_.write(rest, cnt);
    }
  }
  if (n) peer_bell_->ring();
  return ssize_t(n);
}

ssize_t ShmChannel::read(void* buf, size_t n, std::string* why) {
  size_t got = in_.read(buf, n);
  if (got) space_freed();
  return ssize_t(got);
}

void ShmChannel::consume(size_t n) {
  in_.consume(n);
  space_freed();
}

void ShmChannel::space_freed() {
  if (in_.header()->writer_waiting.load(std::memory_order_seq_cst) &&
      in_.header()->writer_waiting.exchange(0, std::memory_order_seq_cst)) {
    peer_bell_->ring();  // the writer waits for space we just freed
  }
}

bool ShmChannel::peer_gone(std::string* why) {
  char c;
  ssize_t r = ::recv(sock_.fd(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r == 0) {
    *why = "the peer closed the connection (process exited or was killed)";
    return true;
  }
  if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    *why = str("connection to the peer failed: ", strerror(errno));
    return true;
  }
  return false;
}

void ShmChannel::shutdown_write() {
  write_closed_ = true;
  ::shutdown(sock_.fd(), SHUT_WR);
}

}  // namespace shm
}  // namespace gw
