#include "gradwire/transport/tcp/socket_channel.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "gradwire/common/error.h"

namespace gw {
namespace tcp {

SocketChannel::SocketChannel(Socket s) : sock_(std::move(s)) { sock_.set_nonblocking(true); }

ssize_t SocketChannel::writev(const iovec* iov, int iovcnt, std::string* why) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iovcnt;
  while (true) {
    ssize_t w = ::sendmsg(sock_.fd(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w >= 0) return w;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno == EINTR) continue;
    *why = str("send failed: ", strerror(errno));
    return -1;
  }
}

ssize_t SocketChannel::read(void* buf, size_t n, std::string* why) {
  while (true) {
    ssize_t r = ::recv(sock_.fd(), buf, n, MSG_DONTWAIT);
    if (r > 0) return r;
    if (r == 0) {
      *why = "the peer closed the connection (process exited or was killed)";
      return -1;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
    if (errno == EINTR) continue;
    *why = str("receive failed: ", strerror(errno));
    return -1;
  }
}

void SocketChannel::shutdown_write() { ::shutdown(sock_.fd(), SHUT_WR); }

}  // namespace tcp
}  // namespace gw
