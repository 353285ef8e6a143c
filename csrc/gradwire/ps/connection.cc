#include "gradwire/ps/connection.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/socket.h>

#include "gradwire/common/error.h"
#include "gradwire/ps/messages.h"

namespace gw {
namespace ps {

namespace {

timeval to_timeval(double seconds) {
  timeval tv{};
  tv.tv_sec = time_t(seconds);
  tv.tv_usec = suseconds_t((seconds - double(tv.tv_sec)) * 1e6);
  return tv;
}

}  // namespace

Connection::Connection(tcp::Socket s, int my_rank, int peer_rank, std::string peer_name,
                       double send_timeout_seconds)
    : sock_(std::move(s)), my_rank_(my_rank), peer_rank_(peer_rank), peer_name_(peer_name) {
  sock_.set_nonblocking(false);
  timeval tv = to_timeval(send_timeout_seconds);
  setsockopt(sock_.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

void Connection::set_receive_timeout(double seconds) {
  timeval tv = to_timeval(seconds > 0 ? seconds : 0);
  if (seconds > 0 && tv.tv_sec == 0 && tv.tv_usec == 0) tv.tv_usec = 1;
  setsockopt(sock_.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

void Connection::send(FrameType type, uint64_t seq, uint32_t tag, const std::string& meta,
                      const std::vector<iovec>& data, uint32_t flags) {
  size_t data_bytes = 0;
  for (const iovec& v : data) data_bytes += v.iov_len;
  uint64_t length = kPayloadPrefix + meta.size() + data_bytes;
  FrameHeader h =
      make_header(type, kPsCommId, my_rank_, MsgKey{seq, tag}, OpFingerprint{}, 0, length, length);
  std::string prefix = payload_prefix(meta.size(), flags);
  std::vector<iovec> iov;
  iov.reserve(3 + data.size());
  iov.push_back({&h, sizeof(h)});
  iov.push_back({&prefix[0], prefix.size()});
  if (!meta.empty()) iov.push_back({const_cast<char*>(meta.data()), meta.size()});
  for (const iovec& v : data) {
    if (v.iov_len) iov.push_back(v);
  }
  std::lock_guard<std::mutex> lk(send_mu_);
  if (closed_) GW_THROW(PeerError, "connection to ", peer_name_, " is closed");
  size_t at = 0;
  while (at < iov.size()) {
    msghdr msg{};
    msg.msg_iov = &iov[at];
    msg.msg_iovlen = std::min<size_t>(iov.size() - at, IOV_MAX);
    ssize_t w = ::sendmsg(sock_.fd(), &msg, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      std::string why = (errno == EAGAIN || errno == EWOULDBLOCK)
                            ? std::string("it stopped reading (send timed out)")
                            : std::string(strerror(errno));
      closed_ = true;
      ::shutdown(sock_.fd(), SHUT_RDWR);
      GW_THROW(PeerError, "sending to ", peer_name_, " failed: ", why);
    }
    size_t left = size_t(w);
    while (at < iov.size() && left >= iov[at].iov_len) left -= iov[at++].iov_len;
    if (at < iov.size()) {
      iov[at].iov_base = static_cast<char*>(iov[at].iov_base) + left;
      iov[at].iov_len -= left;
    }
  }
}

bool Connection::read_header(FrameType expected, FrameHeader* h) {
  char* p = reinterpret_cast<char*>(h);
  size_t got = 0;
  while (got < sizeof(FrameHeader)) {
    ssize_t r = ::recv(sock_.fd(), p + got, sizeof(FrameHeader) - got, 0);
    if (r == 0 && got == 0) return false;
    if (r == 0) GW_THROW(PeerError, peer_name_, " closed the connection inside a frame");
    if (r < 0) {
      if (errno == EINTR) continue;
      GW_THROW(PeerError, "receiving from ", peer_name_, " failed: ", strerror(errno));
    }
    got += size_t(r);
  }
  std::string bad = validate_ps_header(*h, expected, peer_rank_);
  if (!bad.empty()) GW_THROW(ProtocolError, "malformed frame from ", peer_name_, ": ", bad);
  return true;
}

void Connection::read_exact(void* data, size_t n) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    ssize_t r = ::recv(sock_.fd(), p, n, 0);
    if (r == 0) GW_THROW(PeerError, peer_name_, " closed the connection inside a frame");
    if (r < 0) {
      if (errno == EINTR) continue;
      GW_THROW(PeerError, "receiving from ", peer_name_, " failed: ", strerror(errno));
    }
    p += r;
    n -= size_t(r);
  }
}

void Connection::shutdown() {
  closed_ = true;
  if (sock_.valid()) ::shutdown(sock_.fd(), SHUT_RDWR);
}

}  // namespace ps
}  // namespace gw
