#include "gradwire/ps/server.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>

#include "gradwire/common/config.h"
#include "gradwire/common/logging.h"
#include "gradwire/ps/checkpoint.h"
#include "gradwire/ps/push_codec.h"
#include "gradwire/ps/single_copy.h"
#include "gradwire/transport/tcp/handshake.h"
#include "gradwire/transport/transport.h"

namespace gw {
namespace ps {

struct Server::Peer {
  std::shared_ptr<Connection> conn;
  int worker = -1;
  shm::CmaIdentity identity;  // the worker's, verified at attach (single copy only)
  std::mutex mu;
  std::deque<Message> queue;
  bool scheduled = false;
  // Single copy (ps/single_copy.h): the worker reads replies by reference; the reply buffers
  // lent to it, by lend id, until it releases them or the connection ends.
  std::atomic<bool> reply_by_ref{false};
  std::mutex lent_mu;
  std::map<uint64_t, Bytes> lent;
  uint64_t next_lend = 0;
};

struct Server::Parked {
  std::shared_ptr<Peer> peer;
  Message msg;  // a parked push_pull has its push applied: only its read is left
};

struct Server::Outgoing {
  std::shared_ptr<Peer> peer;
  uint64_t seq;
  PsStatus status;
  std::string meta;
  Bytes data;
  bool in_place = false;  // the data was written into the worker's buffers (kDataInPlace)
};

// The connection through which the server may write into a worker's memory: its newest
// attached one. Replaced (under mu) when the worker reconnects, so a request of an older
// connection, still being served, can no longer write (ps/single_copy.h).
struct Server::WorkerSlot {
  std::mutex mu;
  const Peer* current = nullptr;
};

// A connection in its handshake. The acceptor may close it for a newer one (shutdown of `fd`,
// under handshakes_mu_) only while it is listed; its thread unlists it before it owns the
// socket alone again, so `fd` stays open, and the same connection, for as long as it is listed.
struct Server::Handshake {
  int fd = -1;
  std::string from;  // the peer's address, for the log
  bool cut = false;
};

// Writes a read's value straight into the worker's tensor (kReplyInPlace). Consecutive pieces
// are gathered into one process_vm_writev of up to kFlushBytes (they come from consecutive
// parameter memory, still in cache). After a failure it stops writing; the server then answers
// the ordinary way.
class Server::InPlaceSink final : public ValueSink {
 public:
  InPlaceSink(WorkerSlot& slot, const Peer& peer, const DataRef& dest)
      : slot_(slot), peer_(peer), writer_(dest) {}
  void begin(size_t bytes) override {
    begun_ = true;
    if (bytes != writer_.capacity()) {
      fail(str("the reply has ", bytes, " bytes, its destination ", writer_.capacity()));
    }
  }
  void put(const void* p, size_t n) override {
    if (!ok()) return;
    if (pending_n_ && static_cast<const char*>(p) == pending_ + pending_n_) {
      pending_n_ += n;
    } else {
      flush();
      pending_ = static_cast<const char*>(p);
      pending_n_ = n;
    }
    if (pending_n_ >= kFlushBytes) flush();
  }
  // True when the whole value reached the worker.
  bool finish() {
    flush();
    return ok() && writer_.written() == writer_.capacity();
  }
  bool begun() const { return begun_; }
  const std::string& error() const { return error_; }

 private:
  static constexpr size_t kFlushBytes = 256 << 10;
  bool ok() const { return error_.empty(); }
  void fail(std::string why) {
    if (ok()) error_ = std::move(why);
  }
  void flush() {
    if (!pending_n_ || !ok()) return;
    std::lock_guard<std::mutex> lk(slot_.mu);
    if (slot_.current != &peer_ || peer_.conn->closed()) {
      fail("the connection was replaced or closed");
    } else {
      std::string why = writer_.write(pending_, pending_n_);
      if (!why.empty()) fail(std::move(why));
    }
    pending_n_ = 0;
  }

  WorkerSlot& slot_;
  const Peer& peer_;
  InPlaceWriter writer_;
  const char* pending_ = nullptr;
  size_t pending_n_ = 0;
  bool begun_ = false;
  std::string error_;
};

namespace {

std::string read_reply_meta(uint64_t min_clock) {
  Writer w;
  w.u64(min_clock);
  return w.finish();
}

// 127.0.0.0/8, ::1 and IPv4-mapped 127.x: only processes on this host can connect.
bool is_loopback(const std::string& host) {
  in_addr a4{};
  if (inet_pton(AF_INET, host.c_str(), &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  in6_addr a6{};
  if (inet_pton(AF_INET6, host.c_str(), &a6) != 1) return false;
  if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
  return IN6_IS_ADDR_V4MAPPED(&a6) && a6.s6_addr[12] == 127;
}

PsStatus status_of(std::exception_ptr e, std::string* msg) {
  try {
    std::rethrow_exception(e);
  } catch (const InvalidArgument& x) {
    *msg = x.what();
    return PsStatus::kInvalidArgument;
  } catch (const ProtocolError& x) {
    *msg = x.what();
    return PsStatus::kProtocol;
  } catch (const std::exception& x) {
    *msg = x.what();
    return PsStatus::kInternal;
  }
}

}  // namespace

Server::Server(const ServerOptions& opts) : opts_(opts), state_(opts.shard) {
  const ShardConfig& c = opts_.shard;
  GW_CHECK_ARG(c.num_servers > 0 && c.shard_id >= 0 && c.shard_id < c.num_servers, "shard id ",
               c.shard_id, " must be in [0, ", c.num_servers, ")");
  GW_CHECK_ARG(c.num_workers > 0, "the number of workers must be positive");
  GW_CHECK_ARG(opts_.max_handshakes > 0, "the handshake cap must be positive");
  // Who may connect. Decided before anything is restored or bound: a refusal changes nothing.
  const bool token = !Config::get().auth_token.empty();
  const bool loopback = is_loopback(opts_.host);
  GW_CHECK_ARG(token || loopback || opts_.insecure, "refusing to listen on ", opts_.host,
               " without GRADWIRE_AUTH_TOKEN; set it (the same on every worker), bind to ",
               "127.0.0.1 with --host, or pass --insecure");
  for (int i = 0; i < c.num_workers; ++i) slots_.push_back(std::make_unique<WorkerSlot>());
  if (!opts_.checkpoint_dir.empty()) {
    ::mkdir(opts_.checkpoint_dir.c_str(), 0755);
    uint64_t gen = load_checkpoint(state_, opts_.checkpoint_dir);
    Wal::replay(opts_.checkpoint_dir, c.shard_id, gen,
                [this](uint32_t op, Bytes& p) { replay(op, p); });
    // Continue in a fresh log generation: a torn tail of the old one must stay the end of it.
    wal_ = std::make_unique<Wal>(opts_.checkpoint_dir, c.shard_id,
                                 parse_wal_sync(Config::get().ps_wal_sync), gen);
    checkpoint_locked();
  }
  tcp::Endpoint bound;
  listener_ = tcp::listen_on(opts_.host, &bound, opts_.port);
  std::string adv = opts_.host;
  if (adv == "0.0.0.0") adv = tcp::choose_listen_address(Config::get().socket_ifname, "");
  address_ = tcp::Endpoint{adv, bound.port}.to_string();
  if (token) {
    access_ =
        "authentication: GRADWIRE_AUTH_TOKEN from the environment; only peers with the "
        "same token are served";
  } else if (loopback) {
    access_ = str("no GRADWIRE_AUTH_TOKEN: listening on ", opts_.host,
                  " (loopback) only; any process on this host can connect");
  } else {
    access_ = str("--insecure without GRADWIRE_AUTH_TOKEN: open to anyone who can reach port ",
                  bound.port, " on ", opts_.host, " (they can read and overwrite every parameter)");
  }
  pool_ = std::make_unique<ThreadPool>(opts_.threads);
  acceptor_ = std::thread([this] { accept_loop(); });
  checkpointer_ = std::thread([this] { checkpoint_loop(); });
  GW_LOG(kInfo, "parameter server shard ", c.shard_id, "/", c.num_servers, " (", mode_name(c.mode),
         ", ", c.num_workers, " workers) listening on ", address_);
}

Server::~Server() { stop(); }

void Server::stop() {
  if (stopping_.exchange(true)) return;
  stop_cv_.notify_all();
  if (acceptor_.joinable()) acceptor_.join();
  if (checkpointer_.joinable()) checkpointer_.join();
  {
    // Connections still in their handshake: end them now rather than at their deadline.
    std::lock_guard<std::mutex> lk(handshakes_mu_);
    for (auto& hs : handshakes_) {
      hs->cut = true;
      ::shutdown(hs->fd, SHUT_RDWR);
    }
    handshakes_.clear();
  }
  {
    std::lock_guard<std::mutex> lk(peers_mu_);
    for (auto& p : peers_) p->conn->shutdown();
  }
  for (auto& t : peer_threads_) t.thread.join();
  pool_.reset();
  listener_.close();
}

void Server::accept_loop() {
  while (!stopping_) {
    std::string who;
    tcp::Socket s;
    try {
      s = tcp::accept_until(listener_, Clock::now() + std::chrono::milliseconds(200), &who);
    } catch (const std::exception& e) {
      GW_LOG(kWarn, "parameter server accept: ", e.what());
      continue;
    }
    if (!s.valid()) continue;
    std::shared_ptr<Handshake> hs = admit(s, who);
    if (!hs) continue;
    auto peer = std::make_shared<Peer>();
    std::lock_guard<std::mutex> lk(peers_mu_);
    // Drop finished peers so a long job with reconnecting workers does not accumulate them.
    peers_.erase(std::remove_if(peers_.begin(), peers_.end(),
                                [](const std::shared_ptr<Peer>& p) {
                                  return p->conn && p->conn->closed() && p.use_count() == 1;
                                }),
                 peers_.end());
    for (auto it = peer_threads_.begin(); it != peer_threads_.end();) {
      if (it->done->load()) {
        it->thread.join();
        it = peer_threads_.erase(it);
      } else {
        ++it;
      }
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    peer_threads_.push_back(PeerThread{
        done,
        std::thread([this, peer, done, hs, sock = std::make_shared<tcp::Socket>(std::move(s))] {
          serve_peer(peer, std::move(*sock), hs);
          done->store(true);
        })});
  }
}

std::shared_ptr<Server::Handshake> Server::admit(tcp::Socket& sock, const std::string& from) {
  auto hs = std::make_shared<Handshake>();
  hs->fd = sock.fd();
  hs->from = from;
  std::string cut_from;
  {
    std::unique_lock<std::mutex> lk(handshakes_mu_);
    // Closing the oldest rather than the newest: holding the cap then takes a steady flood of
    // new connections, not a few idle ones, and a worker's handshake (one round trip) is done
    // long before 64 newer connections push it out.
    if (handshakes_.size() >= opts_.max_handshakes) {
      Handshake& old = *handshakes_.front();
      old.cut = true;
      ::shutdown(old.fd, SHUT_RDWR);
      cut_from = old.from;
      handshakes_.pop_front();
    }
    // The closed connection's thread leaves at once (its poll wakes up); wait for it, so the
    // threads in a handshake never outnumber the cap.
    if (!handshake_cv_.wait_for(lk, std::chrono::seconds(2),
                                [this] { return handshake_threads_ < opts_.max_handshakes; })) {
      GW_LOG(kWarn, "parameter server shard ", opts_.shard.shard_id, ": closed a connection from ",
             from, ": ", handshake_threads_, " threads are still in a handshake");
      return nullptr;
    }
    ++handshake_threads_;
    handshakes_.push_back(hs);
  }
  if (!cut_from.empty()) {
    ++cuts_unlogged_;
    auto now = Clock::now();
    if (now - last_cut_log_ >= std::chrono::seconds(10)) {  // a flood logs a line per 10 s
      GW_LOG(kWarn, "parameter server shard ", opts_.shard.shard_id, ": ", opts_.max_handshakes,
             " connections are in their handshake (the most it allows); ",
             "closed the oldest, from ", cut_from, " (", cuts_unlogged_,
             " closed for this reason since the last such message)");
      cuts_unlogged_ = 0;
      last_cut_log_ = now;
    }
  }
  return hs;
}

bool Server::handshake_done(const std::shared_ptr<Handshake>& hs) {
  std::lock_guard<std::mutex> lk(handshakes_mu_);
  --handshake_threads_;
  handshake_cv_.notify_all();
  if (hs->cut) return false;
  handshakes_.remove(hs);
  return true;
}

void Server::serve_peer(std::shared_ptr<Peer> peer, tcp::Socket sock,
                        std::shared_ptr<Handshake> hs) {
  const ShardConfig& c = opts_.shard;
  int rank = -1;
  std::string error;
  try {
    rank =
        tcp::handshake_as_server(sock, kPsCommId, c.shard_id, c.num_servers + c.num_workers,
                                 Config::get().auth_token, Clock::now() + std::chrono::seconds(10));
  } catch (const std::exception& e) {
    error = e.what();
  }
  // A connection closed for a newer one was logged by the acceptor.
  if (!handshake_done(hs)) return;
  if (!error.empty()) {
    GW_LOG(kWarn, "parameter server shard ", c.shard_id, ": refused a connection from ", hs->from,
           ": ", error);
    return;
  }
  int worker = rank - c.num_servers;
  if (worker < 0) {
    GW_LOG(kWarn, "parameter server shard ", c.shard_id, ": refused rank ", rank, " from ",
           hs->from, " (a server rank)");
    return;
  }
  peer->worker = worker;
  peer->conn = std::make_shared<Connection>(
      std::move(sock), c.shard_id, rank, str("worker ", worker), Config::get().ps_timeout_seconds);
  {
    std::lock_guard<std::mutex> lk(peers_mu_);
    peers_.push_back(peer);
  }
  GW_LOG(kDebug, "parameter server shard ", c.shard_id, ": worker ", worker, " connected");
  try {
    while (!stopping_) {
      FrameHeader h;
      if (!peer->conn->read_header(FrameType::kPsRequest, &h)) break;
      if (h.tag == uint32_t(PsOp::kAttach)) {
        attach_peer(*peer, h);
        continue;
      }
      if (h.tag == uint32_t(PsOp::kRelease)) {
        Bytes rest(h.length);
        peer->conn->read_exact(rest.data(), rest.size());
        std::lock_guard<std::mutex> lk(peer->lent_mu);
        peer->lent.erase(h.seq);
        continue;
      }
      Message m;
      m.seq = h.seq;
      m.tag = h.tag;
      read_request(*peer, h, &m);
      std::lock_guard<std::mutex> lk(peer->mu);
      peer->queue.push_back(std::move(m));
      if (!peer->scheduled) {
        peer->scheduled = true;
        pool_->submit([this, peer] { drain(peer); });
      }
    }
  } catch (const std::exception& e) {
    if (!stopping_) GW_LOG(kDebug, "parameter server: worker ", worker, " connection: ", e.what());
  }
  peer->conn->shutdown();
  if (worker < int(slots_.size())) {
    std::lock_guard<std::mutex> lk(slots_[size_t(worker)]->mu);
    if (slots_[size_t(worker)]->current == peer.get()) slots_[size_t(worker)]->current = nullptr;
  }
  std::lock_guard<std::mutex> lk(peer->lent_mu);
  peer->lent.clear();
}

void Server::attach_peer(Peer& peer, const FrameHeader& h) {
  Bytes payload(h.length);
  peer.conn->read_exact(payload.data(), payload.size());
  uint32_t meta_bytes = 0, flags = 0;
  parse_prefix(payload.data(), payload.size(), &meta_bytes, &flags);
  Reader r(payload.data() + kPayloadPrefix, meta_bytes);
  shm::CmaIdentity worker = decode_identity(r);
  bool on = Config::get().ps_single_copy_min_bytes > 0;
  SingleCopyCaps caps;
  if (on) {
    std::string why = shm::cma_verify(worker);
    caps.read_by_ref = why.empty();
    if (!why.empty()) {
      GW_LOG(kInfo, "parameter server shard ", opts_.shard.shard_id, ": no single copy from ",
             peer.conn->peer_name(), " (", why, ")");
    }
  }
  if (caps.read_by_ref && peer.worker >= 0 && peer.worker < int(slots_.size())) {
    // This connection is now the one that may write into the worker (WorkerSlot).
    peer.identity = worker;
    std::lock_guard<std::mutex> lk(slots_[size_t(peer.worker)]->mu);
    slots_[size_t(peer.worker)]->current = &peer;
  }
  peer.conn->set_single_copy(caps);
  Writer w;
  w.u32(caps.read_by_ref ? 1 : 0);
  w.u32(on ? 1 : 0);  // an identity follows: the worker may read replies by reference
  std::string meta = w.finish();
  if (on) meta += encode_identity(shm::own_cma_identity());
  peer.conn->send(FrameType::kPsReply, 0, uint32_t(PsStatus::kOk), meta);
}

void Server::read_request(Peer& peer, const FrameHeader& h, Message* m) {
  Connection& c = *peer.conn;
  if (h.length < kPayloadPrefix) GW_THROW(ProtocolError, "request shorter than its prefix");
  char prefix[kPayloadPrefix];
  c.read_exact(prefix, kPayloadPrefix);
  uint32_t meta_bytes = 0, flags = 0;
  parse_prefix(prefix, h.length, &meta_bytes, &flags);
  if (flags & kReplyByRefOk) peer.reply_by_ref = true;
  if (!(flags & (kPayloadByRef | kReplyInPlace))) {
    m->payload.resize(h.length);
    memcpy(m->payload.data(), prefix, kPayloadPrefix);
    c.read_exact(m->payload.data() + kPayloadPrefix, h.length - kPayloadPrefix);
    split_payload(m);
    return;
  }
  if (!c.single_copy().read_by_ref) {
    GW_THROW(ProtocolError, c.peer_name(), " sent data by reference without single copy");
  }
  Bytes meta(meta_bytes);
  c.read_exact(meta.data(), meta_bytes);
  uint64_t left = h.length - kPayloadPrefix - meta_bytes;
  // Reads one DataRef off the data section; it must name the attached worker.
  auto read_ref_record = [&](uint64_t max_bytes) {
    if (max_bytes < DataRef::wire_bytes(0)) {
      GW_THROW(ProtocolError, c.peer_name(), ": a data reference does not fit its request");
    }
    Bytes rec(DataRef::wire_bytes(0));
    c.read_exact(rec.data(), rec.size());
    const uint64_t nseg = DataRef::segment_count(rec.data());
    if (nseg > (max_bytes - rec.size()) / 16) {
      GW_THROW(ProtocolError, c.peer_name(), ": a data reference of ", nseg,
               " segments does not fit its request");
    }
    rec.resize(DataRef::wire_bytes(nseg));
    c.read_exact(rec.data() + DataRef::wire_bytes(0), 16 * nseg);
    DataRef ref = DataRef::decode(rec.data(), rec.size());
    if (ref.owner.pid != peer.identity.pid || ref.owner.token != peer.identity.token) {
      GW_THROW(ProtocolError, c.peer_name(), " sent a reference to another process's memory");
    }
    left -= rec.size();
    return ref;
  };
  if (flags & kReplyInPlace) {
    if (m->tag != uint32_t(PsOp::kPull) && m->tag != uint32_t(PsOp::kPushPull)) {
      GW_THROW(ProtocolError, c.peer_name(), ": an in-place reply destination on op ", m->tag);
    }
    m->reply_dest = std::make_shared<DataRef>(read_ref_record(left));
  }
  // The message then looks as if the bytes had come over the socket (and so does its
  // write-ahead-log record): data by reference is read into place, the destination is not
  // part of it. A plain dense push that no log or BSP buffer needs whole is left in the
  // worker's memory instead, and read piece by piece as the update consumes it.
  DataRef data;
  if (flags & kPayloadByRef) data = read_ref_record(left);
  if (left != 0 && (flags & kPayloadByRef)) {
    GW_THROW(ProtocolError, c.peer_name(), ": ", left, " bytes after a data reference");
  }
  if ((flags & kPayloadByRef) && push_read_in_place(m->tag, meta.data(), meta_bytes)) {
    m->push_ref = std::make_shared<DataRef>(std::move(data));
    data = DataRef();
  }
  uint64_t data_bytes = (flags & kPayloadByRef) ? data.bytes() : left;
  m->payload.resize(kPayloadPrefix + meta_bytes + data_bytes);
  std::string p = payload_prefix(meta_bytes, flags & ~(kPayloadByRef | kReplyInPlace));
  memcpy(m->payload.data(), p.data(), kPayloadPrefix);
  memcpy(m->payload.data() + kPayloadPrefix, meta.data(), meta_bytes);
  char* into = m->payload.data() + kPayloadPrefix + meta_bytes;
  if (flags & kPayloadByRef) {
    std::string why = read_ref(data, {{into, size_t(data_bytes)}});
    if (!why.empty()) GW_THROW(PeerError, "single-copy read from ", c.peer_name(), ": ", why);
  } else {
    c.read_exact(into, data_bytes);
  }
  split_payload(m);
}

bool Server::push_read_in_place(uint32_t op, const char* meta, size_t meta_bytes) const {
  if (op != uint32_t(PsOp::kPush) && op != uint32_t(PsOp::kPushPull)) return false;
  if (wal_ || opts_.shard.mode == Mode::kBsp) return false;
  try {
    Reader r(meta, meta_bytes);
    r.head();
    return r.remaining() < 8;  // the meta of a compressed push goes on with its codec
  } catch (const ProtocolError&) {
    return false;  // handled (and answered) as a malformed request later
  }
}

void Server::drain(std::shared_ptr<Peer> peer) {
  while (true) {
    Message m;
    {
      std::lock_guard<std::mutex> lk(peer->mu);
      if (peer->queue.empty()) {
        peer->scheduled = false;
        return;
      }
      m = std::move(peer->queue.front());
      peer->queue.pop_front();
    }
    handle(peer, m);
  }
}

void Server::send_all(std::vector<Outgoing>& out) {
  const size_t by_ref_min = Config::get().ps_single_copy_min_bytes;
  for (auto& o : out) {
    std::vector<iovec> data;
    std::string rec;
    uint32_t flags = 0;
    uint64_t lend_id = 0;
    if (o.in_place) {
      flags = kDataInPlace;
    } else if (by_ref_min > 0 && o.data.size() >= by_ref_min && o.peer->reply_by_ref) {
      // Lend the buffer: the worker reads it in place and releases it.
      DataRef ref;
      ref.owner = shm::own_cma_identity();
      ref.segments = {{o.data.data(), o.data.size()}};
      {
        std::lock_guard<std::mutex> lk(o.peer->lent_mu);
        lend_id = ref.lend_id = ++o.peer->next_lend;
        o.peer->lent.emplace(lend_id, std::move(o.data));
      }
      rec = ref.encode();
      data.push_back({&rec[0], rec.size()});
      flags = kPayloadByRef;
    } else if (!o.data.empty()) {
      data.push_back({o.data.data(), o.data.size()});
    }
    try {
      o.peer->conn->send(FrameType::kPsReply, o.seq, uint32_t(o.status), o.meta, data, flags);
    } catch (const std::exception&) {
      // The worker is gone; it resends what it still needs after reconnecting.
      if (lend_id) {
        std::lock_guard<std::mutex> lk(o.peer->lent_mu);
        o.peer->lent.erase(lend_id);
      }
    }
  }
  out.clear();
}

void Server::handle(const std::shared_ptr<Peer>& peer, Message& m) {
  std::vector<Outgoing> out;
  try {
    if (!is_known_op(m.tag)) GW_THROW(ProtocolError, "unknown parameter-server op ", m.tag);
    PsOp op = PsOp(m.tag);
    Reader meta(m.meta(), m.meta_bytes);
    RequestHead h = meta.head();
    state_.check_worker(h);
    GW_CHECK_ARG(int(h.worker) + opts_.shard.num_servers == peer->conn->peer_rank(),
                 "request names worker ", h.worker, " on the connection of worker ",
                 peer->conn->peer_rank() - opts_.shard.num_servers);
    if (op == PsOp::kCheckpoint) {
      checkpoint_request(peer, m.seq, h, meta.u64(), &out);
      send_all(out);
      return;
    }
    if (!is_mutation(op) || op == PsOp::kRegisterDense || op == PsOp::kRegisterSparse) {
      // Registration mutates only when worker 0 creates the key; try_read handles both.
      std::unique_lock<std::mutex> lk(mu_);
      bool created = state_.dense().count(h.key) + state_.sparse().count(h.key) == 0;
      if (!try_read(peer, m, &out)) {
        parked_.push_back(std::make_unique<Parked>(Parked{peer, std::move(m)}));
      } else if (is_mutation(op) && created) {
        uint64_t end = wal_ ? wal_->append(uint32_t(op), m.payload) : 0;
        retry_parked(&out);
        lk.unlock();
        if (wal_) wal_->sync(end);
      }
      if (lk.owns_lock()) lk.unlock();
      send_all(out);
      return;
    }
    std::unique_lock<std::mutex> lk(mu_);
    // ASP push_pull: the value right after this push (ShardState::push), into the worker's
    // tensor or a reply buffer.
    Bytes fused;
    BytesSink fused_sink(&fused);
    std::unique_ptr<InPlaceSink> in_place = in_place_sink(peer, m);
    ValueSink* snapshot = nullptr;
    if (op == PsOp::kPushPull) {
      snapshot = in_place ? static_cast<ValueSink*>(in_place.get()) : &fused_sink;
    }
    bool answered = false, wrote = false;
    uint64_t min_clock = 0;
    if (!state_.already_applied(h)) {
      apply_mutation(op, h, meta, m, snapshot);
      answered = in_place ? in_place->begun() : !fused.empty();
      wrote = in_place && answered && in_place->finish();  // still under the lock
      state_.mark_applied(h);
      min_clock = state_.min_clock();
      uint64_t end = wal_ ? wal_->append(uint32_t(op), m.payload) : 0;
      retry_parked(&out);
      lk.unlock();
      if (wal_) wal_->sync(end);
    }
    if (answered && in_place && !wrote) {
      // The in-place write failed: answer with the current value the ordinary way (under ASP
      // it includes this push).
      GW_LOG(kDebug, "parameter server shard ", opts_.shard.shard_id, ": in-place reply to ",
             peer->conn->peer_name(), " failed (", in_place->error(), ")");
      m.reply_dest.reset();
      answered = false;
    }
    if (answered) {
      out.push_back(
          {peer, m.seq, PsStatus::kOk, read_reply_meta(min_clock), std::move(fused), wrote});
    } else if (op == PsOp::kPushPull) {
      if (!lk.owns_lock()) lk.lock();
      if (!try_read(peer, m, &out)) {
        parked_.push_back(std::make_unique<Parked>(Parked{peer, std::move(m)}));
      }
    } else {
      out.push_back({peer, m.seq, PsStatus::kOk, {}, {}});
    }
    if (lk.owns_lock()) lk.unlock();
  } catch (...) {
    std::string msg;
    PsStatus st = status_of(std::current_exception(), &msg);
    out.push_back({peer, m.seq, st, msg, {}});
  }
  send_all(out);
}

bool Server::try_read(const std::shared_ptr<Peer>& peer, Message& m, std::vector<Outgoing>* out) {
  PsOp op = PsOp(m.tag);
  Reader meta(m.meta(), m.meta_bytes);
  RequestHead h = meta.head();
  Bytes data;
  std::string why;
  bool ready = false, wrote = false;
  switch (op) {
    case PsOp::kRegisterDense:
    case PsOp::kRegisterSparse:
      ready = register_key(op, h, meta, m);
      break;
    case PsOp::kPull:
    case PsOp::kPushPull: {
      bool own = op == PsOp::kPushPull;
      std::unique_ptr<InPlaceSink> in_place = in_place_sink(peer, m);
      BytesSink bytes(&data);
      ready =
          state_.pull(h, own, in_place ? static_cast<ValueSink*>(in_place.get()) : &bytes, &why);
      if (ready && in_place) {
        wrote = in_place->finish();
        if (!wrote) {
          GW_LOG(kDebug, "parameter server shard ", opts_.shard.shard_id, ": in-place reply to ",
                 peer->conn->peer_name(), " failed (", in_place->error(), ")");
          state_.pull(h, own, &bytes, &why);  // the same state, under the same lock
        }
      }
      break;
    }
    case PsOp::kPullRows: {
      size_t n = m.data_bytes() / 8;
      GW_CHECK_ARG(m.data_bytes() % 8 == 0, "pull_rows('", h.key, "'): ids must be int64");
      ready = state_.pull_rows(h, reinterpret_cast<const int64_t*>(m.data()), n, &data, &why);
      break;
    }
    default:
      GW_THROW(ProtocolError, "op ", op_name(op), " cannot wait");
  }
  if (!ready) return false;
  bool is_register = op == PsOp::kRegisterDense || op == PsOp::kRegisterSparse;
  out->push_back({peer, m.seq, PsStatus::kOk,
                  is_register ? std::string() : read_reply_meta(state_.min_clock()),
                  std::move(data), wrote});
  return true;
}

std::unique_ptr<Server::InPlaceSink> Server::in_place_sink(const std::shared_ptr<Peer>& peer,
                                                           const Message& m) {
  if (!m.reply_dest || peer->worker < 0 || peer->worker >= int(slots_.size())) return nullptr;
  return std::make_unique<InPlaceSink>(*slots_[size_t(peer->worker)], *peer, *m.reply_dest);
}

void Server::retry_parked(std::vector<Outgoing>* out) {
  for (size_t i = 0; i < parked_.size();) {
    Parked& p = *parked_[i];
    bool done = p.peer->conn->closed();
    if (!done) {
      try {
        done = try_read(p.peer, p.msg, out);
      } catch (...) {
        std::string msg;
        PsStatus st = status_of(std::current_exception(), &msg);
        out->push_back({p.peer, p.msg.seq, st, msg, {}});
        done = true;
      }
    }
    if (done) {
      parked_.erase(parked_.begin() + long(i));
    } else {
      ++i;
    }
  }
}

void Server::replay(uint32_t op, Bytes& payload) {
  Message m;
  m.tag = op;
  m.payload = std::move(payload);
  split_payload(&m);
  Reader meta(m.meta(), m.meta_bytes);
  RequestHead h = meta.head();
  PsOp o = PsOp(op);
  if (o == PsOp::kRegisterDense || o == PsOp::kRegisterSparse) {
    register_key(o, h, meta, m);
    return;
  }
  apply_mutation(o, h, meta, m);
  state_.mark_applied(h);
}

bool Server::register_key(PsOp op, const RequestHead& h, Reader& meta, const Message& m) {
  if (op == PsOp::kRegisterDense) {
    return state_.register_dense(h, meta, reinterpret_cast<const float*>(m.data()),
                                 m.data_bytes() / 4);
  }
  return state_.register_sparse(h, meta);
}

void Server::apply_mutation(PsOp op, const RequestHead& h, Reader& meta, const Message& m,
                            ValueSink* snapshot) {
  switch (op) {
    case PsOp::kPush:
    case PsOp::kPushPull: {
      // The meta of a dense push ends after its head, but for the padding (< 8 bytes).
      if (meta.remaining() < 8 && m.push_ref) {
        RemoteGradSource grad(*m.push_ref, str("worker ", h.worker));
        state_.push(h, grad, snapshot);
        return;
      }
      if (meta.remaining() < 8) {
        state_.push(h, reinterpret_cast<const float*>(m.data()), m.data_bytes() / 4, snapshot);
        return;
      }
      // A compressed push: the meta ends with the codec and its seed (ps/push_codec.h).
      std::string what = str(op_name(op), "('", h.key, "')");
      CodecSpec spec;
      try {
        spec = CodecSpec::parse(meta.str());
      } catch (const InvalidArgument& e) {
        GW_THROW(InvalidArgument, what, ": ", e.what());
      }
      uint64_t seed = meta.u64();
      auto it = state_.dense().find(h.key);
      size_t n = it == state_.dense().end() ? 0 : it->second.shard_elems;
      std::vector<float> grad(n);
      if (n) decode_push(spec, seed, m.data(), m.data_bytes(), n, grad.data(), what);
      state_.push(h, grad.data(), n, snapshot);  // an unknown key fails here as usual
      return;
    }
    case PsOp::kPushRows: {
      uint64_t n = meta.u64();
      uint32_t dim = meta.u32();
      GW_CHECK_ARG(n <= m.data_bytes() / 8 && m.data_bytes() == n * 8 + n * dim * 4, "push_rows('",
                   h.key, "'): ", n, " ids of dim ", dim, " do not fit ", m.data_bytes(), " bytes");
      auto it = state_.sparse().find(h.key);
      GW_CHECK_ARG(it == state_.sparse().end() || it->second.dim == dim, "push_rows('", h.key,
                   "'): gradient rows have dim ", dim, " but the table has dim ", it->second.dim);
      state_.push_rows(h, reinterpret_cast<const int64_t*>(m.data()),
                       reinterpret_cast<const float*>(m.data() + n * 8), n);
      return;
    }
    case PsOp::kClock:
      state_.clock(h);
      return;
    default:
      GW_THROW(ProtocolError, "op ", op_name(op), " is not a mutation");
  }
}

void Server::checkpoint_request(const std::shared_ptr<Peer>& peer, uint64_t seq,
                                const RequestHead& h, uint64_t epoch, std::vector<Outgoing>* out) {
  GW_CHECK_ARG(!opts_.checkpoint_dir.empty(), "parameter server shard ", opts_.shard.shard_id,
               " has no checkpoint directory (start it with --checkpoint-dir)");
  std::lock_guard<std::mutex> lk(mu_);
  if (epoch == 0) {  // on demand: now
    Writer w;
    w.u64(checkpoint_locked());
    out->push_back({peer, seq, PsStatus::kOk, w.finish(), {}});
    return;
  }
  // Collective: every worker asks after its earlier requests were answered and waits for the
  // reply before sending more, so once all have asked no request of theirs is in flight on any
  // shard: the shards' checkpoints of this epoch form one consistent cut.
  auto& waiting = collective_[epoch];
  waiting[h.worker] = {peer, seq};
  if (waiting.size() < size_t(opts_.shard.num_workers)) return;
  Writer w;
  w.u64(checkpoint_locked());
  std::string reply = w.finish();
  for (auto& [worker, who] : waiting)
    out->push_back({who.first, who.second, PsStatus::kOk, reply, {}});
  collective_.erase(epoch);
}

uint64_t Server::checkpoint() {
  GW_CHECK_ARG(!opts_.checkpoint_dir.empty(), "parameter server shard ", opts_.shard.shard_id,
               " has no checkpoint directory (start it with --checkpoint-dir)");
  std::lock_guard<std::mutex> lk(mu_);
  return checkpoint_locked();
}

uint64_t Server::checkpoint_locked() {
  uint64_t gen = wal_->generation() + 1;
  save_checkpoint(state_, opts_.checkpoint_dir, gen);
  wal_->roll(gen);
  return gen;
}

void Server::checkpoint_loop() {
  if (opts_.checkpoint_dir.empty()) return;
  auto last = Clock::now();
  while (!stopping_) {
    {
      std::unique_lock<std::mutex> lk(stop_mu_);
      stop_cv_.wait_for(lk, std::chrono::milliseconds(500), [&] { return stopping_.load(); });
    }
    if (stopping_) return;
    bool due = opts_.checkpoint_every > 0 &&
               Clock::now() - last >= std::chrono::duration<double>(opts_.checkpoint_every);
    bool big = wal_->bytes() > Config::get().ps_wal_max_bytes;
    if (!due && !big) continue;
    try {
      checkpoint();
      last = Clock::now();
    } catch (const std::exception& e) {
      GW_LOG(kError, "parameter server shard ", opts_.shard.shard_id,
             ": periodic checkpoint failed: ", e.what());
    }
  }
}

}  // namespace ps
}  // namespace gw
