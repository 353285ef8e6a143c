// Channel to a peer on the same host: bytes go through a ring in the peer's segment (out) and
// come from a ring in ours (in); each side rings the other's doorbell when it adds data or frees
// space. The TCP connection stays open beside it as the liveness signal: when the peer process
// dies, the kernel closes its socket and we see EOF there.
#pragma once

#include <memory>

#include "gradwire/transport/channel.h"
#include "gradwire/transport/shm/segment.h"
#include "gradwire/transport/tcp/socket.h"

namespace gw {
namespace shm {

class ShmChannel : public Channel {
 public:
  ShmChannel(tcp::Socket sock, Ring in, Ring out, Doorbell* peer_bell,
             std::shared_ptr<Segment> peer_segment);
  ssize_t writev(const iovec* iov, int iovcnt, std::string* why) override;
  ssize_t read(void* buf, size_t n, std::string* why) override;
  size_t peek(const char** data) override { return in_.peek(data); }
  void consume(size_t n) override;
  int fd() const override { return sock_.fd(); }
  bool shared_memory() const override { return true; }
  bool peer_gone(std::string* why) override;
  bool may_have_input() const override { return !in_.empty(); }
  const std::atomic<int32_t>* peer_cpu() const override { return peer_segment_->cpu_hint(); }
  void shutdown_write() override;
  const char* kind() const override { return "shm"; }

 private:
  tcp::Socket sock_;
  Ring in_, out_;
  Doorbell* peer_bell_;
  std::shared_ptr<Segment> peer_segment_;  // keeps the mapping of `out_` alive
  bool write_closed_ = false;
  void space_freed();
};

}  // namespace shm
}  // namespace gw
