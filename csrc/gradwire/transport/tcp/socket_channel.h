// Channel over a connected, non-blocking TCP socket.
#pragma once

#include "gradwire/transport/channel.h"
#include "gradwire/transport/tcp/socket.h"

namespace gw {
namespace tcp {

class SocketChannel : public Channel {
 public:
  explicit SocketChannel(Socket s);
  ssize_t writev(const iovec* iov, int iovcnt, std::string* why) override;
  ssize_t read(void* buf, size_t n, std::string* why) override;
  int fd() const override { return sock_.fd(); }
  bool shared_memory() const override { return false; }
  void shutdown_write() override;
  const char* kind() const override { return "tcp"; }

 private:
  Socket sock_;
};

}  // namespace tcp
}  // namespace gw
