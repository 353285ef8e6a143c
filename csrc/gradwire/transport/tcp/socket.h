// Thin RAII and helpers over POSIX TCP sockets, plus the choice of the address to listen on.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <string>

namespace gw {
namespace tcp {

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Socket& operator=(Socket&& o) noexcept;
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  ~Socket() { close(); }

  int fd() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void close();
  void set_nonblocking(bool on);
  void set_nodelay();

 private:
  int fd_ = -1;
};

struct Endpoint {
  std::string host;  // numeric address
  int port = 0;
  std::string to_string() const;  // "host:port" or "[v6]:port"
  static Endpoint parse(const std::string& s);
};

// A listening socket bound to `host` on `port` (0: an ephemeral port).
Socket listen_on(const std::string& host, Endpoint* bound, int port = 0);
// One connection attempt, bounded by the deadline and 2 s: an invalid socket, with the reason in
// *error, when the peer refused or did not answer.
Socket try_connect(const Endpoint& ep, std::chrono::steady_clock::time_point deadline,
                   std::string* error);
// Connects within the deadline, retrying while the listener is not up yet.
Socket connect_to(const Endpoint& ep, std::chrono::steady_clock::time_point deadline);
// Accepts one connection, or returns an invalid socket when the deadline passes.
Socket accept_until(const Socket& listener, std::chrono::steady_clock::time_point deadline,
                    std::string* peer_addr);

// Blocking exact-length IO with a deadline (used by the handshake only).
void send_all(const Socket& s, const void* data, size_t n,
              std::chrono::steady_clock::time_point deadline);
void recv_all(const Socket& s, void* data, size_t n,
              std::chrono::steady_clock::time_point deadline);

// The address to advertise: the interface named by `ifname` if set; else the local address that
// routes to `route_hint` (the master's host); else a non-loopback interface; else 127.0.0.1.
std::string choose_listen_address(const std::string& ifname, const std::string& route_hint);

}  // namespace tcp
}  // namespace gw
