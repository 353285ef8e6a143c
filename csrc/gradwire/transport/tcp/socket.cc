#include "gradwire/transport/tcp/socket.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include <memory>
#include <thread>
#include <vector>

#include "gradwire/common/error.h"
#include "gradwire/common/logging.h"
#include "gradwire/transport/transport.h"

namespace gw {
namespace tcp {
namespace {

std::string addr_to_string(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof(buf));
  } else if (sa->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, buf, sizeof(buf));
  }
  return buf;
}

int port_of(const sockaddr* sa) {
  if (sa->sa_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(sa)->sin_port);
  return ntohs(reinterpret_cast<const sockaddr_in6*>(sa)->sin6_port);
}

bool is_loopback(const std::string& host) {
  return host.rfind("127.", 0) == 0 || host == "::1" || host == "localhost";
}

// Resolves host to a numeric address; empty when it does not resolve.
std::string resolve(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0 || !res) return "";
  std::string out;
  for (addrinfo* a = res; a; a = a->ai_next) {
    if (a->ai_family == AF_INET) {  // prefer IPv4
      out = addr_to_string(a->ai_addr);
      break;
    }
    if (out.empty()) out = addr_to_string(a->ai_addr);
  }
  freeaddrinfo(res);
  return out;
}

// The local address the kernel would use to reach `host` (no packet is sent).
std::string route_source_address(const std::string& host) {
  std::string numeric = resolve(host);
  if (numeric.empty()) return "";
  bool v6 = numeric.find(':') != std::string::npos;
  int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
  if (fd < 0) return "";
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(9);
    inet_pton(AF_INET6, numeric.c_str(), &a->sin6_addr);
    len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(9);
    inet_pton(AF_INET, numeric.c_str(), &a->sin_addr);
    len = sizeof(sockaddr_in);
  }
  std::string out;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) == 0) {
    sockaddr_storage local{};
    socklen_t llen = sizeof(local);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &llen) == 0) {
      out = addr_to_string(reinterpret_cast<sockaddr*>(&local));
    }
  }
  ::close(fd);
  return out;
}

}  // namespace

Socket& Socket::operator=(Socket&& o) noexcept {
  if (this != &o) {
    close();
    fd_ = o.fd_;
    o.fd_ = -1;
  }
  return *this;
}

void Socket::close() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

void Socket::set_nonblocking(bool on) {
  int flags = fcntl(fd_, F_GETFL, 0);
  fcntl(fd_, F_SETFL, on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK));
}

void Socket::set_nodelay() {
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

std::string Endpoint::to_string() const {
  if (host.find(':') != std::string::npos) return str("[", host, "]:", port);
  return str(host, ":", port);
}

Endpoint Endpoint::parse(const std::string& s) {
  size_t colon = s.rfind(':');
  GW_CHECK_ARG(colon != std::string::npos && colon + 1 < s.size(), "bad endpoint '", s, "'");
  Endpoint ep;
  ep.host = s.substr(0, colon);
  if (ep.host.size() >= 2 && ep.host.front() == '[')
    ep.host = ep.host.substr(1, ep.host.size() - 2);
  ep.port = std::stoi(s.substr(colon + 1));
  return ep;
}

Socket listen_on(const std::string& host, Endpoint* bound, int port) {
  bool v6 = host.find(':') != std::string::npos;
  Socket s(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  GW_CHECK_ARG(s.valid(), "socket(): ", strerror(errno));
  int one = 1;
  setsockopt(s.fd(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_storage ss{};
  socklen_t len;
  if (v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(uint16_t(port));
    GW_CHECK_ARG(inet_pton(AF_INET6, host.c_str(), &a->sin6_addr) == 1, "bad IPv6 address ", host);
    len = sizeof(sockaddr_in6);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(uint16_t(port));
    GW_CHECK_ARG(inet_pton(AF_INET, host.c_str(), &a->sin_addr) == 1, "bad IPv4 address ", host);
    len = sizeof(sockaddr_in);
  }
  if (::bind(s.fd(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    GW_THROW(Error, "cannot listen on ", host, ":", port, ": bind: ", strerror(errno));
  }
  GW_ENFORCE(::listen(s.fd(), 1024) == 0, "listen: ", strerror(errno));
  sockaddr_storage local{};
  socklen_t llen = sizeof(local);
  getsockname(s.fd(), reinterpret_cast<sockaddr*>(&local), &llen);
  bound->host = host;
  bound->port = port_of(reinterpret_cast<sockaddr*>(&local));
  return s;
}

Socket try_connect(const Endpoint& ep, std::chrono::steady_clock::time_point deadline,
                   std::string* error) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* res = nullptr;
  std::string port = std::to_string(ep.port);
  int rc = getaddrinfo(ep.host.c_str(), port.c_str(), &hints, &res);
  GW_CHECK_ARG(rc == 0 && res, "cannot parse address ", ep.to_string(), ": ", gai_strerror(rc));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> guard(res, freeaddrinfo);
  Socket s(::socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  s.set_nonblocking(true);
  int r = ::connect(s.fd(), res->ai_addr, res->ai_addrlen);
  if (r != 0 && errno == EINPROGRESS) {
    pollfd p{s.fd(), POLLOUT, 0};
    int pr = ::poll(&p, 1, std::max(1, std::min(ms_until(deadline), 2000)));
    if (pr == 1) {
      int err = 0;
      socklen_t elen = sizeof(err);
      getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &elen);
      r = err == 0 ? 0 : -1;
      errno = err;
    } else {
      r = -1;
      errno = ETIMEDOUT;
    }
  }
  if (r != 0) {
    *error = strerror(errno);
    return Socket();
  }
  s.set_nonblocking(false);
  s.set_nodelay();
  return s;
}

Socket connect_to(const Endpoint& ep, std::chrono::steady_clock::time_point deadline) {
  std::string last_error;
  auto delay = std::chrono::milliseconds(10);
  while (true) {
    Socket s = try_connect(ep, deadline, &last_error);
    if (s.valid()) return s;
    if (std::chrono::steady_clock::now() + delay >= deadline) break;
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(500));
  }
  GW_THROW(TimeoutError, "could not connect to ", ep.to_string(),
           " before the deadline (last error: ", last_error, ")");
}

Socket accept_until(const Socket& listener, std::chrono::steady_clock::time_point deadline,
                    std::string* peer_addr) {
  while (true) {
    int wait = ms_until(deadline);
    pollfd p{listener.fd(), POLLIN, 0};
    int pr = ::poll(&p, 1, wait);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) return Socket();
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    int fd = ::accept4(listener.fd(), reinterpret_cast<sockaddr*>(&ss), &len, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ECONNABORTED) continue;
      GW_THROW(Error, "accept: ", strerror(errno));
    }
    Socket s(fd);
    s.set_nodelay();
    if (peer_addr) {
      *peer_addr = str(addr_to_string(reinterpret_cast<sockaddr*>(&ss)), ":",
                       port_of(reinterpret_cast<sockaddr*>(&ss)));
    }
    return s;
  }
}

void send_all(const Socket& s, const void* data, size_t n,
              std::chrono::steady_clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    pollfd pf{s.fd(), POLLOUT, 0};
    int pr = ::poll(&pf, 1, ms_until(deadline));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) GW_THROW(TimeoutError, "handshake send timed out");
    ssize_t w = ::send(s.fd(), p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      GW_THROW(PeerError, "handshake send failed: ", strerror(errno));
    }
    p += w;
    n -= size_t(w);
  }
}

void recv_all(const Socket& s, void* data, size_t n,
              std::chrono::steady_clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (n > 0) {
    pollfd pf{s.fd(), POLLIN, 0};
    int pr = ::poll(&pf, 1, ms_until(deadline));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) GW_THROW(TimeoutError, "handshake receive timed out");
    ssize_t r = ::recv(s.fd(), p, n, MSG_DONTWAIT);
    if (r == 0) GW_THROW(PeerError, "connection closed during the handshake");
    if (r < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      GW_THROW(PeerError, "handshake receive failed: ", strerror(errno));
    }
    p += r;
    n -= size_t(r);
  }
}

std::string choose_listen_address(const std::string& ifname, const std::string& route_hint) {
  ifaddrs* ifs = nullptr;
  GW_ENFORCE(getifaddrs(&ifs) == 0, "getifaddrs: ", strerror(errno));
  std::unique_ptr<ifaddrs, void (*)(ifaddrs*)> guard(ifs, freeifaddrs);
  if (!ifname.empty()) {
    std::string v4, v6, names;
    for (ifaddrs* i = ifs; i; i = i->ifa_next) {
      if (!i->ifa_addr) continue;
      if (names.find(i->ifa_name) == std::string::npos)
        names += str(names.empty() ? "" : ", ", i->ifa_name);
      if (ifname != i->ifa_name) continue;
      if (i->ifa_addr->sa_family == AF_INET && v4.empty()) v4 = addr_to_string(i->ifa_addr);
      if (i->ifa_addr->sa_family == AF_INET6 && v6.empty()) {
        auto* a6 = reinterpret_cast<sockaddr_in6*>(i->ifa_addr);
        if (!IN6_IS_ADDR_LINKLOCAL(&a6->sin6_addr)) v6 = addr_to_string(i->ifa_addr);
      }
    }
    if (!v4.empty()) return v4;
    if (!v6.empty()) return v6;
    GW_THROW(InvalidArgument, "GRADWIRE_SOCKET_IFNAME=", ifname,
             ": no such interface with an IP address (interfaces here: ", names, ")");
  }
  if (!route_hint.empty()) {
    std::string numeric = resolve(route_hint);
    if (!numeric.empty() && is_loopback(numeric))
      return numeric.find(':') != std::string::npos ? "::1" : "127.0.0.1";
    std::string src = route_source_address(route_hint);
    if (!src.empty()) return src;
    GW_LOG(kWarn, "no route to ", route_hint, "; picking an interface address instead");
  }
  for (ifaddrs* i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr || !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK)) continue;
    if (i->ifa_addr->sa_family == AF_INET) return addr_to_string(i->ifa_addr);
  }
  return "127.0.0.1";
}

}  // namespace tcp
}  // namespace gw
