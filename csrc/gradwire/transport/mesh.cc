#include "gradwire/transport/mesh.h"

#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "gradwire/common/config.h"
#include "gradwire/common/error.h"
#include "gradwire/common/logging.h"
#include "gradwire/transport/shm/shm_channel.h"
#include "gradwire/transport/tcp/handshake.h"
#include "gradwire/transport/tcp/socket_channel.h"

namespace gw {
namespace {

using tcp::Socket;

std::string addr_key(int rank) { return str("addr/", rank); }

#pragma pack(push, 1)
struct HostMsg {
  uint32_t magic;
  uint8_t wants_shm;
  char host_id[251];
};
struct NameMsg {
  char name[128];
};
#pragma pack(pop)
constexpr uint32_t kHostMagic = 0x54534847;  // "GHST"

// Dials rank j: reads its address, connects and authenticates. A refused connection re-reads
// the address (the peer may not have published this set-up's yet) until the deadline; a refusal
// or failed handshake under an earlier set-up's nonce throws StaleRendezvous.
Socket dial(const Rendezvous& rv, int rank, int j, const MeshOptions& opts) {
  auto delay = std::chrono::milliseconds(5);
  std::string last_error;
  tcp::Endpoint ep;
  while (true) {
    ep = tcp::Endpoint::parse(rv.get(addr_key(j)));
    Socket s = tcp::try_connect(ep, opts.deadline, &last_error);
    if (s.valid()) {
      try {
        tcp::handshake_as_client(s, opts.comm_id, rank, j, opts.secret, opts.deadline);
        return s;
      } catch (const Error& e) {
        if (rv.stale()) GW_THROW(StaleRendezvous, "rank ", rank, " read an earlier set-up's keys");
        GW_THROW(PeerError, "rank ", rank, " could not connect to rank ", j, " at ", ep.to_string(),
                 ": ", e.what());
      }
    }
    if (rv.stale()) GW_THROW(StaleRendezvous, "rank ", rank, " read an earlier set-up's keys");
    if (Clock::now() + delay >= opts.deadline) break;
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(200));
  }
  GW_THROW(TimeoutError, "rank ", rank, " could not connect to rank ", j, " at ", ep.to_string(),
           " before the deadline (last error: ", last_error, ")");
}

// A connection accepted during set-up whose handshake is under way.
struct PendingHandshake {
  Socket sock;
  std::string from;
  std::unique_ptr<tcp::ServerHandshake> hs;
  uint8_t auth[tcp::ServerHandshake::kAuthBytes];
  size_t got = 0;
  Clock::time_point deadline;
};

// More connections than this in their handshake at once: newer ones are closed at once.
constexpr size_t kMaxPendingHandshakes = 256;

// Sends a reply of at most a few dozen bytes to a fresh connection: it fits the socket buffer,
// so the short deadline only guards against a peer that vanished.
bool send_reply(const Socket& s, const void* data, size_t n) {
  try {
    tcp::send_all(s, data, n, Clock::now() + std::chrono::seconds(1));
    return true;
  } catch (const Error&) {
    return false;
  }
}

// Accepts the `expected` higher ranks. Handshakes run concurrently, each with its own deadline
// (GRADWIRE_HANDSHAKE_SECONDS), so a connection that never speaks (a port scanner, a health
// check, a stray client) delays no one: it is closed when its own deadline passes.
void accept_peers(const Socket& listener, int rank, int size, const MeshOptions& opts,
                  const std::string& listen_address, std::vector<Socket>& socks) {
  const double handshake_seconds = Config::get().handshake_seconds;
  std::vector<PendingHandshake> pending;
  int accepted = 0;
  const int expected = size - 1 - rank;
  while (accepted < expected) {
    Clock::time_point now = Clock::now();
    if (now >= opts.deadline) {
      std::vector<int> missing;
      for (int j = rank + 1; j < size; ++j) {
        if (!socks[j].valid()) missing.push_back(j);
      }
      GW_THROW(TimeoutError, "rank ", rank, ": ranks ", rank_list(missing), " did not connect to ",
               listen_address, " before the deadline",
               pending.empty() ? std::string()
                               : str(" (", pending.size(),
                                     " connection(s) still in their "
                                     "handshake)"));
    }
    Clock::time_point wake = opts.deadline;
    std::vector<pollfd> fds{{listener.fd(), POLLIN, 0}};
    for (auto& p : pending) {
      fds.push_back({p.sock.fd(), POLLIN, 0});
      wake = std::min(wake, p.deadline);
    }
    int wait_ms = std::max(0, ms_until(wake));
    int pr = ::poll(fds.data(), fds.size(), wait_ms);
    if (pr < 0 && errno != EINTR) GW_THROW(Error, "poll during set-up: ", strerror(errno));
    now = Clock::now();
    // Progress the handshakes under way (indices match fds[1..]).
    for (size_t i = 0; i < pending.size(); ++i) {
      PendingHandshake& p = pending[i];
      bool drop = false;
      if (pr > 0 && (fds[i + 1].revents & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t r = ::recv(p.sock.fd(), p.auth + p.got, sizeof(p.auth) - p.got, MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
          GW_LOG(kWarn, "rank ", rank, ": a connection from ", p.from,
                 " closed during its handshake");
          drop = true;
        } else if (r > 0) {
          p.got += size_t(r);
        }
      }
      if (!drop && p.got == sizeof(p.auth)) {
        drop = true;  // done, one way or the other
        std::string reply;
        try {
          int r = p.hs->check(p.auth, &reply);
          if (socks[r].valid()) {
            GW_LOG(kWarn, "rank ", rank, ": dropped a second connection claiming rank ", r,
                   " from ", p.from);
          } else if (send_reply(p.sock, reply.data(), reply.size())) {
            socks[r] = std::move(p.sock);
            ++accepted;
          }
        } catch (const ProtocolError& e) {
          GW_LOG(kWarn, "rank ", rank, " refused a connection from ", p.from, ": ", e.what());
          if (!reply.empty()) send_reply(p.sock, reply.data(), reply.size());
        }
      }
      if (!drop && now >= p.deadline) {
        GW_LOG(kWarn, "rank ", rank, ": closed a connection from ", p.from, " that sent ", p.got,
               " of ", sizeof(p.auth), " handshake bytes in ", handshake_seconds, " s");
        drop = true;
      }
      if (drop) p.sock = Socket();  // closes it, unless it became a peer's socket
    }
    pending.erase(std::remove_if(pending.begin(), pending.end(),
                                 [](const PendingHandshake& p) { return !p.sock.valid(); }),
                  pending.end());
    // New connections: greet each and add it to the handshakes under way.
    if (pr > 0 && (fds[0].revents & POLLIN)) {
      while (true) {
        std::string from;
        Socket s = tcp::accept_until(listener, now, &from);  // does not wait
        if (!s.valid()) break;
        if (pending.size() >= kMaxPendingHandshakes) {
          GW_LOG(kWarn, "rank ", rank, ": closed a connection from ", from, ": ",
                 kMaxPendingHandshakes, " handshakes are under way already");
          continue;
        }
        PendingHandshake p;
        p.from = from;
        p.hs = std::make_unique<tcp::ServerHandshake>(opts.comm_id, rank, size, opts.secret);
        p.deadline =
            std::min(opts.deadline, now + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(handshake_seconds)));
        if (!send_reply(s, p.hs->hello(), tcp::ServerHandshake::kHelloBytes)) continue;
        p.sock = std::move(s);
        pending.push_back(std::move(p));
      }
    }
  }
}

// Dials lower ranks and accepts higher ones; returns one authenticated socket per peer.
std::vector<Socket> connect_sockets(const Rendezvous& rv, int rank, int size,
                                    const MeshOptions& opts, std::string* listen_address) {
  tcp::Endpoint bound;
  Socket listener = tcp::listen_on(opts.listen_host, &bound);
  *listen_address = bound.to_string();
  rv.set(addr_key(rank), *listen_address);
  GW_LOG(kDebug, "rank ", rank, " listening on ", *listen_address, " (communicator ", opts.comm_id,
         ", set-up ", rv.nonce(), ")");
  std::vector<Socket> socks(size);
  // Lower ranks reach their accept phase after finishing their own (lower) dials, so the waits
  // form no cycle. Higher ranks that dial meanwhile wait in the listen backlog.
  for (int j = 0; j < rank; ++j) socks[j] = dial(rv, rank, j, opts);
  accept_peers(listener, rank, size, opts, *listen_address, socks);
  return socks;
}

}  // namespace

std::string local_host_id() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  std::string boot;
  std::ifstream("/proc/sys/kernel/random/boot_id") >> boot;
  struct stat st{};
  unsigned long long netns = 0;
  if (stat("/proc/self/ns/net", &st) == 0) netns = (unsigned long long)st.st_ino;
  return str(host, "|", boot, "|", netns);
}

std::unique_ptr<StreamTransport> build_mesh(const Rendezvous& rv, int rank, int size,
                                            const MeshOptions& opts, std::string* listen_address) {
  std::vector<Socket> socks = connect_sockets(rv, rank, size, opts, listen_address);
  std::vector<std::unique_ptr<Channel>> channels(size);
  std::shared_ptr<shm::Segment> own;
  std::vector<bool> local(size, false);

  // The upgrade runs in phases of "send to every peer, then receive from every peer": the
  // messages are small enough for socket buffers, so no phase can block on a peer's order.
  const bool wants = opts.transport != "tcp";
  HostMsg mine{kHostMagic, uint8_t(wants), {}};
  std::string id = local_host_id();
  strncpy(mine.host_id, id.c_str(), sizeof(mine.host_id) - 1);
  for (int j = 0; j < size; ++j) {
    if (j != rank) tcp::send_all(socks[j], &mine, sizeof(mine), opts.deadline);
  }
  int n_local = 0;
  for (int j = 0; j < size; ++j) {
    if (j == rank) continue;
    HostMsg theirs;
    tcp::recv_all(socks[j], &theirs, sizeof(theirs), opts.deadline);
    GW_CHECK_ARG(theirs.magic == kHostMagic, "rank ", j, " sent a malformed host message");
    theirs.host_id[sizeof(theirs.host_id) - 1] = '\0';
    local[j] = wants && theirs.wants_shm && id == theirs.host_id;
    if (opts.transport == "shm" && !local[j]) {
      GW_THROW(InvalidArgument, "GRADWIRE_TRANSPORT=shm but rank ", j, " is on another host (",
               theirs.host_id, ") or has shared memory turned off");
    }
    n_local += local[j];
  }
  std::vector<std::shared_ptr<shm::Segment>> peer_segments(size);
  if (n_local > 0) {
    own = std::make_shared<shm::Segment>(
        shm::Segment::create(size, opts.shm_ring_bytes, opts.mailbox_bytes, opts.comm_id, rank));
    NameMsg name{};
    strncpy(name.name, own->name().c_str(), sizeof(name.name) - 1);
    for (int j = 0; j < size; ++j) {
      if (local[j]) tcp::send_all(socks[j], &name, sizeof(name), opts.deadline);
    }
    for (int j = 0; j < size; ++j) {
      if (!local[j]) continue;
      NameMsg theirs;
      tcp::recv_all(socks[j], &theirs, sizeof(theirs), opts.deadline);
      theirs.name[sizeof(theirs.name) - 1] = '\0';
      peer_segments[j] = std::make_shared<shm::Segment>(shm::Segment::open(theirs.name));
    }
    // Every local peer has mapped our segment once it acknowledges; then the name can go.
    char ack = 1;
    for (int j = 0; j < size; ++j) {
      if (local[j]) tcp::send_all(socks[j], &ack, 1, opts.deadline);
    }
    for (int j = 0; j < size; ++j) {
      if (local[j]) tcp::recv_all(socks[j], &ack, 1, opts.deadline);
    }
    own->unlink();
  }
  for (int j = 0; j < size; ++j) {
    if (j == rank) continue;
    if (local[j]) {
      channels[j] = std::make_unique<shm::ShmChannel>(std::move(socks[j]), own->ring(j),
                                                      peer_segments[j]->ring(rank),
                                                      peer_segments[j]->bell(), peer_segments[j]);
    } else {
      channels[j] = std::make_unique<tcp::SocketChannel>(std::move(socks[j]));
    }
  }
  // Mailboxes for small messages need every peer on this host (an algorithm uses them for all of
  // its messages or none). Their capacity is the smallest of all segments', which every rank
  // computes alike, so ranks agree on which ops use them even when configured differently.
  std::vector<MailLink> mail;
  size_t mail_bytes = 0;
  if (size > 1 && n_local == size - 1) {
    mail_bytes = own->mailbox_bytes();
    for (int j = 0; j < size; ++j) {
      if (j != rank) mail_bytes = std::min(mail_bytes, peer_segments[j]->mailbox_bytes());
    }
  }
  if (mail_bytes > 0) {
    mail.resize(size);
    for (int j = 0; j < size; ++j) {
      if (j == rank) continue;
      mail[j] =
          MailLink{own->mailbox(j), peer_segments[j]->mailbox(rank), peer_segments[j]->bell()};
    }
  }
  GW_LOG(kDebug, "rank ", rank, ": ", n_local, " peers over shared memory, ", size - 1 - n_local,
         " over TCP, mailboxes of ", mail_bytes, " bytes");
  StreamOptions so = opts.stream;
  so.comm_id = opts.comm_id;
  // Oversubscribed (more ranks of this communicator on this host than cores we may run on):
  // waiting ranks yield their core while they spin. A lower bound on co-located ranks, since
  // other communicators and jobs are not counted.
  cpu_set_t cpus;
  int ncpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
  so.yield_while_spinning = n_local + 1 > ncpu;
  return std::make_unique<StreamTransport>(rank, size, std::move(channels), own, so,
                                           std::move(mail), mail_bytes);
}

}  // namespace gw
