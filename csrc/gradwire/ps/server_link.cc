#include "gradwire/ps/server_link.h"

#include "gradwire/common/config.h"
#include "gradwire/common/logging.h"
#include "gradwire/transport/tcp/handshake.h"
#include "gradwire/transport/transport.h"

namespace gw {
namespace ps {
namespace {

std::exception_ptr server_error(PsStatus st, const std::string& shard, const std::string& msg) {
  std::string m = str("parameter server ", shard, ": ", msg);
  switch (st) {
    case PsStatus::kInvalidArgument:
      return std::make_exception_ptr(InvalidArgument(m));
    case PsStatus::kProtocol:
      return std::make_exception_ptr(ProtocolError(m));
    default:
      return std::make_exception_ptr(Error(m));
  }
}

void discard(Connection& c, size_t n) {
  char buf[65536];
  while (n > 0) {
    size_t k = std::min(n, sizeof(buf));
    c.read_exact(buf, k);
    n -= k;
  }
}

}  // namespace

ServerLink::ServerLink(const LinkIdentity& id, std::chrono::steady_clock::time_point deadline)
    : id_(id), ep_(tcp::Endpoint::parse(id.address)) {
  conn_ = connect(deadline);
  reader_ = std::thread([this] { reader_loop(); });
}

ServerLink::~ServerLink() { close(); }

void ServerLink::close() {
  std::shared_ptr<Connection> c;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closing_) return;
    closing_ = true;
    c = conn_;
    for (auto& [seq, req] : pending_) {
      req->future->part_done(
          std::make_exception_ptr(PeerError(str(req->what, ": the client was closed"))));
    }
    pending_.clear();
  }
  cv_.notify_all();
  if (c) c->shutdown();
  if (reader_.joinable()) reader_.join();
}

std::shared_ptr<Connection> ServerLink::connect(std::chrono::steady_clock::time_point deadline) {
  std::string who = str("shard ", id_.shard, " at ", id_.address);
  tcp::Socket s;
  try {
    s = tcp::connect_to(ep_, deadline);
  } catch (const TimeoutError& e) {
    GW_THROW(TimeoutError, "could not connect to parameter server ", who, ": ", e.what());
  }
  int my_rank = id_.num_servers + id_.worker;
  tcp::handshake_as_client(s, kPsCommId, my_rank, id_.shard, Config::get().auth_token,
                           std::min(deadline, Clock::now() + std::chrono::seconds(10)));
  auto c = std::make_shared<Connection>(std::move(s), my_rank, id_.shard,
                                        str("parameter server ", who), id_.timeout_seconds);
  if (Config::get().ps_single_copy_min_bytes > 0) {
    attach(*c, std::min(deadline, Clock::now() + std::chrono::seconds(10)));
  }
  return c;
}

void ServerLink::attach(Connection& c, std::chrono::steady_clock::time_point deadline) {
  // The reader thread is not reading this connection yet: the reply is read here, within the
  // connect deadline.
  FrameHeader h;
  Bytes payload;
  try {
    c.set_receive_timeout(
        std::max(0.001, std::chrono::duration<double>(deadline - Clock::now()).count()));
    c.send(FrameType::kPsRequest, 0, uint32_t(PsOp::kAttach),
           encode_identity(shm::own_cma_identity()));
    if (!c.read_header(FrameType::kPsReply, &h)) {
      GW_THROW(PeerError, "the connection was closed");
    }
    payload.resize(h.length);
    c.read_exact(payload.data(), payload.size());
    c.set_receive_timeout(0);
  } catch (const PeerError& e) {
    GW_THROW(PeerError, "attaching to ", c.peer_name(), " failed: ", e.what());
  }
  SingleCopyCaps caps;
  if (h.seq != 0) {
    GW_THROW(ProtocolError, c.peer_name(), " answered attach with request id ", h.seq);
  }
  if (PsStatus(h.tag) == PsStatus::kOk) {
    uint32_t meta_bytes = 0, flags = 0;
    parse_prefix(payload.data(), payload.size(), &meta_bytes, &flags);
    Reader r(payload.data() + kPayloadPrefix, meta_bytes);
    caps.send_by_ref = r.u32() != 0;
    if (r.u32() != 0) {
      std::string why = shm::cma_verify(decode_identity(r));
      caps.read_by_ref = why.empty();
      if (!why.empty()) {
        GW_LOG(kInfo, "worker ", id_.worker, ": no single copy from parameter server shard ",
               id_.shard, " (", why, ")");
      }
    }
  }
  c.set_single_copy(caps);
  GW_LOG(kDebug, "worker ", id_.worker, ": shard ", id_.shard, " single copy: send ",
         caps.send_by_ref ? "yes" : "no", ", receive ", caps.read_by_ref ? "yes" : "no");
}

void ServerLink::send_request(Connection& c, PendingRequest& req) {
  const SingleCopyCaps& caps = c.single_copy();
  const size_t min_bytes = Config::get().ps_single_copy_min_bytes;
  uint32_t flags = caps.read_by_ref ? kReplyByRefOk : 0;
  size_t bytes = 0, reply_bytes = 0;
  for (const iovec& v : req.data) bytes += v.iov_len;
  for (const iovec& v : req.reply_into) reply_bytes += v.iov_len;
  // caps.send_by_ref: the server proved it can reach this process's memory, to read and so to
  // write it (the same ptrace permission).
  std::string records;
  if (caps.send_by_ref && Config::get().ps_reply_in_place && !req.on_data &&
      reply_bytes >= min_bytes && (req.op == PsOp::kPull || req.op == PsOp::kPushPull)) {
    DataRef dest;
    dest.owner = shm::own_cma_identity();
    dest.segments = req.reply_into;
    records = dest.encode();
    flags |= kReplyInPlace;
    req.future->note_remote_access();
  }
  req.sent_in_place = (flags & kReplyInPlace) != 0;
  std::vector<iovec> data;
  if (caps.send_by_ref && bytes >= min_bytes) {
    DataRef ref;
    ref.owner = shm::own_cma_identity();
    ref.segments = req.data;
    records += ref.encode();
    flags |= kPayloadByRef;
    req.future->note_remote_access();
    single_copy_bytes_ += bytes;
  } else {
    data = req.data;
  }
  if (!records.empty()) data.insert(data.begin(), iovec{&records[0], records.size()});
  c.send(FrameType::kPsRequest, req.seq, uint32_t(req.op), req.meta, data, flags);
}

void ServerLink::submit(std::shared_ptr<PendingRequest> req,
                        const std::function<std::string(uint64_t)>& encode) {
  std::lock_guard<std::mutex> order(send_mu_);
  std::shared_ptr<Connection> c;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closing_) GW_THROW(PeerError, req->what, ": the parameter-server client is closed");
    req->seq = next_seq_++;
    req->meta = encode(is_mutation(req->op) ? next_mseq_++ : 0);
    pending_[req->seq] = req;
    c = conn_;
  }
  cv_.notify_all();
  if (!c) return;  // the reader resends it after reconnecting
  try {
    send_request(*c, *req);
  } catch (const PeerError&) {
    // The reader sees the broken connection, reconnects and resends.
  }
}

void ServerLink::cancel(uint64_t seq) {
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return receiving_ != seq; });
  pending_.erase(seq);
}

void ServerLink::reader_loop() {
  while (true) {
    std::shared_ptr<Connection> c;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (closing_) return;
      c = conn_;
    }
    if (!c) {
      reconnect();
      continue;
    }
    try {
      FrameHeader h;
      if (!c->read_header(FrameType::kPsReply, &h)) {
        GW_THROW(PeerError, c->peer_name(), " closed the connection");
      }
      read_reply(*c, h);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> lk(mu_);
      if (closing_) return;
      last_error_ = e.what();
      GW_LOG(kInfo, "worker ", id_.worker, ": lost parameter server shard ", id_.shard, " (",
             e.what(), "); reconnecting");
      c->shutdown();
      if (conn_ == c) conn_.reset();
      receiving_ = 0;
      cv_.notify_all();
    }
  }
}

void ServerLink::read_reply(Connection& c, const FrameHeader& h) {
  char prefix[kPayloadPrefix];
  if (h.length < kPayloadPrefix) {
    GW_THROW(ProtocolError, "reply from shard ", id_.shard, " is shorter than its prefix");
  }
  c.read_exact(prefix, kPayloadPrefix);
  uint32_t meta_bytes = 0, flags = 0;
  parse_prefix(prefix, h.length, &meta_bytes, &flags);
  std::string meta(meta_bytes, '\0');
  c.read_exact(&meta[0], meta_bytes);
  size_t data_bytes = h.length - kPayloadPrefix - meta_bytes;
  // A reply by reference: the data section names the server's buffer, lent until released.
  bool by_ref = flags & kPayloadByRef;
  DataRef ref;
  if (by_ref) {
    if (!c.single_copy().read_by_ref) {
      GW_THROW(ProtocolError, "shard ", id_.shard,
               " sent a reply by reference on a connection without single copy");
    }
    Bytes rec(data_bytes);
    c.read_exact(rec.data(), data_bytes);
    ref = DataRef::decode(rec.data(), rec.size());
    data_bytes = ref.bytes();
  }
  auto release = [&] { c.send(FrameType::kPsRequest, ref.lend_id, uint32_t(PsOp::kRelease), ""); };
  // Moves the reply's data into `into`: from the socket, or by single copy.
  auto take = [&](const std::vector<iovec>& into) {
    if (!by_ref) {
      for (const iovec& v : into) c.read_exact(v.iov_base, v.iov_len);
      return;
    }
    std::string why = read_ref(ref, into);
    if (!why.empty()) GW_THROW(PeerError, "single-copy read from shard ", id_.shard, ": ", why);
    single_copy_bytes_ += data_bytes;
    release();
  };
  // Drops the reply's data: hands a lent buffer back, or reads past the bytes.
  auto skip = [&] {
    if (by_ref) {
      release();
    } else {
      discard(c, data_bytes);
    }
  };
  std::shared_ptr<PendingRequest> req;
  {
    std::lock_guard<std::mutex> lk(mu_);
    auto it = pending_.find(h.seq);
    if (it != pending_.end()) {
      req = it->second;
      pending_.erase(it);
      receiving_ = h.seq;
    }
  }
  if (!req) {  // a duplicate answer to a resent request, or a cancelled one
    skip();
    return;
  }
  std::exception_ptr err;
  std::string shard = str("shard ", id_.shard);
  try {
    if (PsStatus(h.tag) != PsStatus::kOk) {
      skip();
      while (!meta.empty() && meta.back() == '\0') meta.pop_back();
      err = server_error(PsStatus(h.tag), shard, meta);
    } else if (flags & kDataInPlace) {
      // The server wrote the data into reply_into itself; only a request that asked for it on
      // this connection may be answered so.
      if (data_bytes != 0 || !req->sent_in_place) {
        GW_THROW(ProtocolError, req->what, ": ", shard, " answered in place a request that ",
                 "did not ask for it");
      }
      size_t n = 0;
      for (const iovec& v : req->reply_into) n += v.iov_len;
      single_copy_bytes_ += n;
      in_place_bytes_ += n;
    } else if (req->on_data) {
      Bytes buf(data_bytes);
      take({{buf.data(), data_bytes}});
      req->on_data(buf.data(), data_bytes);
    } else {
      size_t want = 0;
      for (const iovec& v : req->reply_into) want += v.iov_len;
      if (want != data_bytes) {
        skip();
        GW_THROW(ProtocolError, req->what, ": ", shard, " answered ", data_bytes,
                 " bytes, expected ", want);
      }
      take(req->reply_into);
    }
    if (!err && req->on_meta) {
      Reader r(meta.data(), meta.size());
      req->on_meta(r);
    }
  } catch (const PeerError&) {
    // The connection broke inside the reply: put the request back to be resent.
    std::lock_guard<std::mutex> lk(mu_);
    pending_[req->seq] = req;
    receiving_ = 0;
    cv_.notify_all();
    throw;
  } catch (...) {
    err = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    receiving_ = 0;
  }
  cv_.notify_all();
  req->future->part_done(err);
}

void ServerLink::fail_expired() {
  auto now = Clock::now();
  for (auto it = pending_.begin(); it != pending_.end();) {
    if (it->second->deadline > now) {
      ++it;
      continue;
    }
    it->second->future->part_done(std::make_exception_ptr(PeerError(
        str(it->second->what, ": parameter server shard ", id_.shard, " at ", id_.address,
            " is unreachable and did not come back before the deadline (last error: ", last_error_,
            ")"))));
    it = pending_.erase(it);
  }
}

void ServerLink::reconnect() {
  Clock::time_point deadline;
  {
    std::unique_lock<std::mutex> lk(mu_);
    // Reconnect only when there is something to send (an idle link stays down quietly).
    cv_.wait_for(lk, std::chrono::milliseconds(200), [&] { return closing_ || !pending_.empty(); });
    fail_expired();
    if (closing_ || pending_.empty()) return;
    deadline = Clock::now() + std::chrono::seconds(1);
    for (auto& [seq, req] : pending_) deadline = std::min(deadline, req->deadline);
  }
  std::shared_ptr<Connection> c;
  try {
    c = connect(std::max(deadline, Clock::now() + std::chrono::milliseconds(50)));
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lk(mu_);
    last_error_ = e.what();
    return;
  }
  std::lock_guard<std::mutex> order(send_mu_);
  std::vector<std::shared_ptr<PendingRequest>> resend;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (closing_) return;
    conn_ = c;
    for (auto& [seq, req] : pending_) resend.push_back(req);
  }
  GW_LOG(kInfo, "worker ", id_.worker, ": reconnected to parameter server shard ", id_.shard,
         "; resending ", resend.size(), " requests");
  try {
    for (auto& req : resend) {
      send_request(*c, *req);
    }
  } catch (const PeerError&) {
    // Broken again: the reader notices and reconnects once more.
  }
}

}  // namespace ps
}  // namespace gw
