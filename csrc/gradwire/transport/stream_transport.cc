#include "gradwire/transport/stream_transport.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>

#include "gradwire/common/error.h"
#include "gradwire/common/logging.h"
#include "gradwire/reduce/reduce.h"

namespace gw {
namespace {

constexpr size_t kHeaderBytes = sizeof(FrameHeader);

}  // namespace

StreamTransport::StreamTransport(int rank, int size, std::vector<std::unique_ptr<Channel>> channels,
                                 std::shared_ptr<shm::Segment> own_segment,
                                 const StreamOptions& opts, std::vector<MailLink> mail,
                                 size_t mail_bytes)
    : rank_(rank),
      size_(size),
      comm_id_(opts.comm_id),
      max_frame_bytes_(opts.max_frame_bytes),
      probe_seconds_(opts.probe_seconds),
      spin_(std::chrono::duration_cast<Clock::duration>(
          std::chrono::duration<double>(opts.spin_seconds))),
      yield_(opts.yield_while_spinning),
      cma_min_bytes_(opts.cma_min_bytes),
      early_pool_(kEarlyPoolBytes, kEarlyPoolBytes / 4),
      peers_(size),
      own_segment_(std::move(own_segment)),
      mail_bytes_(mail.empty() ? 0 : mail_bytes) {
  GW_ENFORCE(int(channels.size()) == size, "need one channel slot per rank");
  GW_ENFORCE(mail.empty() || int(mail.size()) == size, "need one mail link slot per rank");
  if (own_segment_) {
    bell_ = own_segment_->bell();
    own_cpu_ = own_segment_->cpu_hint();
  }
  GW_ENFORCE(mail_bytes_ == 0 || bell_ != nullptr, "mailboxes need this rank's segment");
  for (int r = 0; r < size; ++r) {
    peers_[r].rank = r;
    if (r == rank) continue;
    GW_ENFORCE(channels[r] != nullptr, "no channel to rank ", r);
    peers_[r].ch = std::move(channels[r]);
    peers_[r].open = true;
    (peers_[r].ch->shared_memory() ? shm_peers_ : tcp_peers_)++;
    if (mail_bytes_) {
      GW_ENFORCE(peers_[r].ch->shared_memory() && mail[r].in.valid() && mail[r].out.valid(),
                 "mailboxes need every peer on this host");
      peers_[r].mail = mail[r];
    }
  }
}

StreamTransport::~StreamTransport() = default;

std::vector<std::string> StreamTransport::channel_kinds() const {
  std::vector<std::string> kinds;
  for (auto& p : peers_) kinds.push_back(p.rank == rank_ ? "self" : p.ch->kind());
  return kinds;
}

StreamTransport::Peer& StreamTransport::peer(int r) {
  GW_ENFORCE(r >= 0 && r < size_ && r != rank_, "bad peer rank ", r);
  return peers_[r];
}

void StreamTransport::begin_op(uint64_t seq, const OpFingerprint& fp, Clock::time_point deadline) {
  throw_if_failed();
  in_op_ = true;
  mail_op_ = false;
  cur_seq_ = seq;
  cur_fp_ = fp;
  deadline_ = deadline;
  op_start_ = Clock::now();
  // Frames of this op may already wait as unexpected messages: check them now, so a mismatch
  // is reported even when this rank never receives from that peer.
  for (auto& p : peers_) {
    for (auto& u : p.unexpected) {
      if (!(u.key.seq & kP2PSeqBit) && u.key.seq == seq && u.fp != fp) {
        check_match(p, u.fp, fp, seq, 0, 0);
      }
    }
  }
}

void StreamTransport::end_op() {
  if (!error_) flush_answers();
  in_op_ = false;
  if (error_) return;
  recent_ops_[cur_seq_ % recent_ops_.size()] = RecentOp{cur_seq_, cur_fp_};
  // Every message of a collective is received within it. One still unclaimed here was sent by a
  // peer that ran a different op (e.g. both ranks thought they were the broadcast root).
  if (cur_fp_.kind == OpKind::kSendRecv) return;
  if (mail_bytes_) check_stray_mail(true);
  for (auto& p : peers_) {
    for (auto& u : p.unexpected) {
      if (!(u.key.seq & kP2PSeqBit) && u.key.seq == cur_seq_) {
        unclaimed(p, u.fp, cur_fp_, u.key);
      }
    }
  }
}

// Answers to single-copy offers have no request of their own: they must leave before the op
// ends, or the peer waiting for one would wait until this rank's next op (or forever).
void StreamTransport::flush_answers() {
  for (auto& p : peers_) {
    while (p.open && !p.sendq.empty()) {
      if (drive_writes(p)) continue;
      if (!progress()) {
        if (Clock::now() >= deadline_) on_timeout();
        if (yield_) sched_yield();
      }
    }
  }
}

void StreamTransport::throw_if_failed() {
  if (error_) std::rethrow_exception(error_);
  if (abort_requested_.load(std::memory_order_acquire)) {
    std::string reason;
    {
      std::lock_guard<std::mutex> lock(abort_mu_);
      reason = abort_reason_;
    }
    abort(reason);
    std::rethrow_exception(error_);
  }
}

void StreamTransport::request_abort(const std::string& reason) {
  {
    std::lock_guard<std::mutex> lock(abort_mu_);
    abort_reason_ = reason;
  }
  abort_requested_.store(true, std::memory_order_release);
}

std::string StreamTransport::op_description() const {
  if (!in_op_) return "between ops";
  if (cur_fp_.kind == OpKind::kSendRecv) return cur_fp_.describe();
  return str(cur_fp_.describe(), " [op seq ", cur_seq_, "]");
}

void StreamTransport::enqueue_frame(Peer& p, const FrameHeader& h, const char* data, Request* req) {
  p.sendq.push_back(SendItem{h, data, 0, req});
}

void StreamTransport::isend(int dst, const MsgKey& key, const OpFingerprint& fp, const void* data,
                            size_t bytes, Request* req) {
  throw_if_failed();
  Peer& p = peer(dst);
  check_open(p);
  req->done = false;
  if (cma_eligible(p, key, bytes)) {
    cma_offer(p, key, fp, static_cast<const char*>(data), bytes, req);
  } else {
    enqueue_data(p, key, fp, static_cast<const char*>(data), bytes, req);
  }
  drive_writes(p);  // eager: most small messages leave right here
}

void StreamTransport::enqueue_data(Peer& p, const MsgKey& key, const OpFingerprint& fp,
                                   const char* data, size_t bytes, Request* req) {
  size_t offset = 0;
  do {
    size_t len = std::min(bytes - offset, max_frame_bytes_);
    bool last = offset + len == bytes;
    FrameHeader h = make_header(FrameType::kData, comm_id_, rank_, key, fp, offset, len, bytes);
    enqueue_frame(p, h, data + offset, last ? req : nullptr);
    offset += len;
  } while (offset < bytes);
}

void StreamTransport::irecv(int src, const MsgKey& key, const OpFingerprint& fp, void* data,
                            size_t bytes, Request* req) {
  post(peer(src), PostedRecv{key, fp, static_cast<char*>(data), bytes, 0, req});
}

void StreamTransport::irecv_reduce(int src, const MsgKey& key, const OpFingerprint& fp, void* data,
                                   size_t bytes, DType dtype, ReduceOp op, Request* req) {
  GW_ENFORCE(bytes % dtype_size(dtype) == 0, "reduce receive of ", bytes, " bytes of ",
             dtype_name(dtype));
  PostedRecv r{key, fp, static_cast<char*>(data), bytes, 0, req};
  r.reduce = true;
  r.dtype = dtype;
  r.op = op;
  post(peer(src), r);
}

void StreamTransport::deliver(PostedRecv& r, const char* src, size_t offset, size_t n) {
  if (r.reduce) {
    reduce_into(r.buf + offset, src, n / dtype_size(r.dtype), r.dtype, r.op);
  } else if (n) {
    memcpy(r.buf + offset, src, n);
  }
}

void StreamTransport::post(Peer& p, PostedRecv r) {
  throw_if_failed();
  r.req->done = false;
  for (auto u = p.unexpected.begin(); u != p.unexpected.end(); ++u) {
    if (!(u->key == r.key)) continue;
    check_match(p, u->fp, r.fp, r.key.seq, u->data.size(), r.size);
    if (p.rstate == ReadState::kPayload && !p.target_is_posted && p.unexpected_it == u) {
      break;  // a fragment is landing in it now; on_frame_done moves it over
    }
    deliver(r, u->data.data(), 0, u->got);
    r.got = u->got;
    p.unexpected.erase(u);
    if (r.got == r.size) {
      r.req->done = true;
      return;
    }
    check_open(p);  // the rest of the message can no longer come
    p.posted.push_back(r);
    return;
  }
  check_open(p);
  p.posted.push_back(r);
}

void StreamTransport::check_match(const Peer& p, const OpFingerprint& theirs,
                                  const OpFingerprint& ours, uint64_t seq, size_t their_bytes,
                                  size_t our_bytes) {
  if (theirs != ours) {
    std::string where = (seq & kP2PSeqBit) ? std::string("a send/recv pair") : str("op seq ", seq);
    fail<MismatchError>(str("collective mismatch at ", where, ": rank ", rank_, " called ",
                            ours.describe(), " but rank ", p.rank, " called ", theirs.describe()));
  }
  if (their_bytes != our_bytes) {
    fail<MismatchError>(str("size mismatch in ", ours.describe(), ": rank ", p.rank, " sent ",
                            their_bytes, " bytes but rank ", rank_, " expects ", our_bytes));
  }
}

void StreamTransport::unclaimed(const Peer& p, const OpFingerprint& theirs,
                                const OpFingerprint& ours, const MsgKey& key) {
  check_match(p, theirs, ours, key.seq, 0, 0);  // different ops: names both calls
  fail<MismatchError>(str("collective mismatch at op seq ", key.seq, ": rank ", p.rank,
                          " sent rank ", rank_, " a message (tag ", key.tag, ") of ",
                          theirs.describe(), " that rank ", rank_, "'s ", ours.describe(),
                          " does not expect"));
}

// The CPU this rank runs on now, published as its hint when it changed.
int StreamTransport::publish_cpu() {
  int cpu = sched_getcpu();
  if (own_cpu_ && own_cpu_->load(std::memory_order_relaxed) != cpu) {
    own_cpu_->store(cpu, std::memory_order_relaxed);
  }
  return cpu;
}

bool StreamTransport::shares_core(const Peer& p, int cpu) const {
  const std::atomic<int32_t>* hint = p.open ? p.ch->peer_cpu() : nullptr;
  return hint != nullptr && hint->load(std::memory_order_relaxed) == cpu;
}

void StreamTransport::wait(Request* req) {
  auto idle_since = Clock::now();
  bool yielding = yield_;
  uint32_t idle_rounds = 0;
  while (!req->done) {
    throw_if_failed();
    uint32_t bell = bell_ ? bell_->value() : 0;  // read before looking, so no ring is missed
    if (progress()) {
      idle_since = Clock::now();
      continue;
    }
    auto now = Clock::now();
    if (now >= deadline_) on_timeout();
    if (now - idle_since < spin_) {
      // Spin briefly: the next chunk is usually close. Yield while spinning when a peer may be
      // runnable but waiting for this very core: always when ranks outnumber cores, and when a
      // shared-memory peer last waited on this CPU. The second case arises with other work on
      // the machine: ranks that sleep as often as they do here get placed on one core by the
      // scheduler, and a spin that does not yield there costs its whole length per message
      // (an allreduce of 1 us took 2 x GRADWIRE_SPIN_US for whole runs). Peers are checked on
      // the first idle round and every 64th, not on every one.
      if (!yield_ && idle_rounds++ % 64 == 0 && shm_peers_ > 0) {
        int cpu = publish_cpu();
        yielding = false;
        for (auto& p : peers_) yielding = yielding || shares_core(p, cpu);
      }
      if (yielding) sched_yield();
      continue;
    }
    block(bell, ms_until(deadline_));
    idle_since = Clock::now();
  }
}

void StreamTransport::progress_idle(int max_wait_ms) {
  const auto spin_until = Clock::now() + spin_;
  while (true) {
    throw_if_failed();
    uint32_t bell = bell_ ? bell_->value() : 0;  // read before looking, so no ring is missed
    if (progress()) return;
    if (Clock::now() >= spin_until) {
      block(bell, max_wait_ms);
      progress();
      return;
    }
    if (yield_) sched_yield();
  }
}

bool StreamTransport::has_unexpected(int src, const MsgKey& key) const {
  if (src < 0 || src >= size_ || src == rank_) return false;
  for (auto& u : peers_[src].unexpected) {
    if (u.key == key) return true;
  }
  return false;
}

bool StreamTransport::progress() {
  bool moved = false;
  for (auto& p : peers_) {
    if (!p.open || !p.ch->shared_memory()) continue;
    if (!p.sendq.empty()) moved |= drive_writes(p);
    moved |= drive_reads(p);
  }
  // Sockets carry TCP peers' data; for shared-memory peers only liveness, checked now and then.
  if (tcp_peers_ > 0 || (++rounds_ & 1023) == 0) moved |= poll_sockets(0);
  // An op that exchanges frames takes nothing from the mailboxes: a message there for it (or
  // for an earlier op) means a peer ran it differently.
  if (mail_bytes_ && !mail_op_ && in_op_) check_stray_mail(false);
  return moved;
}

const OpFingerprint* StreamTransport::recent_op(uint64_t seq) const {
  const RecentOp& r = recent_ops_[seq % recent_ops_.size()];
  return r.seq == seq && seq != 0 ? &r.fp : nullptr;
}

void StreamTransport::block(uint32_t bell_seen, int timeout_ms) {
  timeout_ms = std::max(timeout_ms, 1);
  if (tcp_peers_ == 0 && bell_ != nullptr) {
    // Every peer is local: sleep on our doorbell; wake at least every 20 ms to check liveness.
    bell_->wait(bell_seen, std::min(timeout_ms, 20));
    poll_sockets(0);
  } else {
    poll_sockets(std::min(timeout_ms, shm_peers_ > 0 ? 1 : 100));
  }
}

bool StreamTransport::poll_sockets(int timeout_ms) {
  // pollfds are rebuilt each round: worlds are small here, and it keeps the state in one place.
  pollfd fds[256];
  int ranks[256];
  std::vector<pollfd> big_fds;
  std::vector<int> big_ranks;
  pollfd* f = fds;
  int* rk = ranks;
  if (size_ > 256) {
    big_fds.resize(size_);
    big_ranks.resize(size_);
    f = big_fds.data();
    rk = big_ranks.data();
  }
  nfds_t n = 0;
  for (auto& p : peers_) {
    if (!p.open) continue;
    short ev = POLLIN;
    if (!p.ch->shared_memory() && !p.sendq.empty()) ev |= POLLOUT;
    f[n] = pollfd{p.ch->fd(), ev, 0};
    rk[n++] = p.rank;
  }
  if (n == 0) return false;
  int ready = ::poll(f, n, timeout_ms);
  if (ready < 0) {
    if (errno == EINTR) return false;
    fail<Error>(str("poll failed: ", strerror(errno)));
  }
  bool moved = false;
  for (nfds_t i = 0; i < n && ready > 0; ++i) {
    if (f[i].revents == 0) continue;
    Peer& p = peers_[rk[i]];
    if (p.ch->shared_memory()) {
      moved |= drive_reads(p);  // take what the peer left in the ring (maybe an ABORT) first
      std::string why;
      if (p.ch->peer_gone(&why)) peer_closed(p, why);
      continue;
    }
    if (f[i].revents & POLLOUT) moved |= drive_writes(p);
    if (f[i].revents & (POLLIN | POLLHUP | POLLERR)) moved |= drive_reads(p);
  }
  return moved;
}

bool StreamTransport::drive_writes(Peer& p) {
  bool progress = false;
  while (!p.sendq.empty()) {
    SendItem& item = p.sendq.front();
    size_t payload = item.hdr.length;
    iovec iov[2];
    int iovcnt = 0;
    if (item.sent < kHeaderBytes) {
      iov[iovcnt++] = {reinterpret_cast<char*>(&item.hdr) + item.sent, kHeaderBytes - item.sent};
      if (payload) iov[iovcnt++] = {const_cast<char*>(item.data), payload};
    } else {
      size_t done = item.sent - kHeaderBytes;
      iov[iovcnt++] = {const_cast<char*>(item.data) + done, payload - done};
    }
    std::string why;
    ssize_t w = p.ch->writev(iov, iovcnt, &why);
    if (w < 0) peer_lost(p, why);
    if (w == 0) return progress;
    progress = true;
    bytes_sent_ += size_t(w);
    item.sent += size_t(w);
    if (item.sent == kHeaderBytes + payload) {
      if (item.req) item.req->done = true;
      p.sendq.pop_front();
    }
  }
  return progress;
}

bool StreamTransport::drive_reads(Peer& p) {
  bool progress = false;
  while (p.open) {
    char* dst;
    size_t want;
    if (p.rstate == ReadState::kPayload && p.target_is_posted && p.posted_it->reduce) {
      if (!read_reducing(p)) return progress;
      progress = true;
      continue;
    }
    if (p.rstate == ReadState::kHeader) {
      dst = reinterpret_cast<char*>(&p.hdr) + p.hdr_got;
      want = kHeaderBytes - p.hdr_got;
    } else {
      dst = p.dst;
      want = p.remaining;
    }
    std::string why;
    ssize_t r = p.ch->read(dst, want, &why);
    if (r < 0) {
      peer_closed(p, why);
      return progress;
    }
    if (r == 0) return progress;
    progress = true;
    bytes_received_ += size_t(r);
    if (p.rstate == ReadState::kHeader) {
      p.hdr_got += size_t(r);
      if (p.hdr_got == kHeaderBytes) on_header(p);
    } else {
      p.dst += r;
      p.remaining -= size_t(r);
      if (p.remaining == 0) on_frame_done(p);
    }
  }
  return progress;
}

// Reads the next piece of a payload that reduces into a posted buffer: whole elements are
// reduced from the scratch buffer (hot in cache) straight into their destination, a trailing
// partial element waits for the rest of its bytes. Returns false when nothing could be read.
bool StreamTransport::read_reducing(Peer& p) {
  PostedRecv& r = *p.posted_it;
  const size_t es = dtype_size(r.dtype);
  // Shared memory: reduce straight out of the ring, whole elements at a time, in pieces of at
  // most kReducePiece so the sender can refill behind us. A partial element at the ring's end
  // (or one already in the scratch) takes the copying path below.
  const char* src;
  size_t in_place = p.scratch_fill ? 0 : p.ch->peek(&src);
  in_place = std::min({in_place, p.remaining, kReducePiece}) / es * es;
  if (in_place) {
    reduce_into(p.dst, src, in_place / es, r.dtype, r.op);
    p.ch->consume(in_place);
    bytes_received_ += in_place;
    p.remaining -= in_place;
    p.dst += in_place;
    if (p.remaining == 0) on_frame_done(p);
    return true;
  }
  if (p.scratch.empty()) p.scratch.resize(kReducePiece);
  size_t want = std::min(p.remaining, p.scratch.size() - p.scratch_fill);
  std::string why;
  ssize_t n = p.ch->read(p.scratch.data() + p.scratch_fill, want, &why);
  if (n < 0) {
    peer_closed(p, why);
    return false;
  }
  if (n == 0) return false;
  bytes_received_ += size_t(n);
  p.remaining -= size_t(n);
  p.scratch_fill += size_t(n);
  size_t whole = p.scratch_fill / es * es;
  reduce_into(p.dst, p.scratch.data(), whole / es, r.dtype, r.op);
  p.dst += whole;
  p.scratch_fill -= whole;
  if (p.scratch_fill) memmove(p.scratch.data(), p.scratch.data() + whole, p.scratch_fill);
  if (p.remaining == 0) {
    GW_ENFORCE(p.scratch_fill == 0, "frame payload is not a whole number of elements");
    on_frame_done(p);
  }
  return true;
}

void StreamTransport::on_header(Peer& p) {
  const FrameHeader& h = p.hdr;
  std::string bad = validate_header(h, comm_id_, p.rank);
  if (!bad.empty())
    fail<ProtocolError>(str("malformed frame from rank ", p.rank, ": ", bad), p.rank);
  p.rstate = ReadState::kPayload;
  p.remaining = h.length;
  // No message buffer is the target until a DATA frame names one (post() checks this).
  p.target_is_posted = false;
  p.unexpected_it = p.unexpected.end();
  switch (static_cast<FrameType>(h.type)) {
    case FrameType::kData: {
      MsgKey key{h.seq, h.tag};
      OpFingerprint fp = header_fingerprint(h);
      check_incoming(p, key, fp);
      auto it = std::find_if(p.posted.begin(), p.posted.end(),
                             [&](const PostedRecv& r) { return r.key == key; });
      if (it != p.posted.end()) {
        check_match(p, fp, it->fp, key.seq, h.msg_bytes, it->size);
        p.target_is_posted = true;
        p.scratch_fill = 0;
        p.posted_it = it;
        p.dst = it->buf + h.offset;
      } else {
        auto u = std::find_if(p.unexpected.begin(), p.unexpected.end(),
                              [&](const Unexpected& x) { return x.key == key; });
        if (u == p.unexpected.end()) {
          p.unexpected.push_back(Unexpected{key, fp, EarlyBytes(&early_pool_, h.msg_bytes), 0});
          u = std::prev(p.unexpected.end());
        }
        p.target_is_posted = false;
        p.unexpected_it = u;
        p.dst = u->data.data() + h.offset;
      }
      break;
    }
    case FrameType::kAbort:
      p.control.assign(h.length, '\0');
      p.dst = &p.control[0];
      break;
    case FrameType::kProbe: {
      FrameHeader reply = make_header(FrameType::kProbeReply, comm_id_, rank_,
                                      MsgKey{cur_seq_, in_op_ ? 1u : 0u}, cur_fp_, 0, 0, 0);
      enqueue_frame(p, reply, nullptr, nullptr);
      break;
    }
    case FrameType::kProbeReply:
      probe_replies_[p.rank] = ProbeReply{true, h.seq, h.tag == 1};
      break;
    case FrameType::kCmaOffer:  // the payload is read like an ABORT reason, then handled whole
      p.control.assign(h.length, '\0');
      p.dst = &p.control[0];
      break;
    case FrameType::kCmaDone:
    case FrameType::kCmaRefuse:
      break;
    case FrameType::kPsRequest:
    case FrameType::kPsReply:
      break;  // never reaches here: validate_header rejects them on collective connections
  }
  if (p.remaining == 0) on_frame_done(p);
}

void StreamTransport::check_incoming(const Peer& p, const MsgKey& key, const OpFingerprint& fp) {
  if (key.seq & kP2PSeqBit) return;
  if (in_op_ && key.seq == cur_seq_ && fp != cur_fp_) check_match(p, fp, cur_fp_, key.seq, 0, 0);
  // A message for an op this rank has already finished: the peer ran a different op there.
  const OpFingerprint* done = recent_op(key.seq);
  if (done && (key.seq != cur_seq_ || !in_op_)) unclaimed(p, fp, *done, key);
}

void StreamTransport::on_frame_done(Peer& p) {
  const FrameHeader h = p.hdr;
  p.rstate = ReadState::kHeader;
  p.hdr_got = 0;
  switch (static_cast<FrameType>(h.type)) {
    case FrameType::kAbort:
      peer_lost(p, str("it aborted the communicator: ", p.control));
    case FrameType::kCmaOffer:
      on_cma_offer(p, h);
      return;
    case FrameType::kCmaDone:
    case FrameType::kCmaRefuse:
      on_cma_answer(p, h);
      return;
    case FrameType::kData:
      break;
    default:
      return;
  }
  if (p.target_is_posted) {
    auto it = p.posted_it;
    it->got += h.length;
    if (it->got == it->size) {
      it->req->done = true;
      p.posted.erase(it);
    }
    return;
  }
  auto u = p.unexpected_it;
  u->got += h.length;
  auto it = std::find_if(p.posted.begin(), p.posted.end(),
                         [&](const PostedRecv& r) { return r.key == u->key; });
  if (it != p.posted.end()) move_to_posted(p, u, it);
}

void StreamTransport::move_to_posted(Peer& p, std::list<Unexpected>::iterator u,
                                     std::list<PostedRecv>::iterator r) {
  deliver(*r, u->data.data(), 0, u->got);
  r->got = u->got;
  p.unexpected.erase(u);
  if (r->got == r->size) {
    r->req->done = true;
    p.posted.erase(r);
  }
}

void StreamTransport::on_timeout() {
  // Ask every peer which op it is in. Peers inside an op answer from their own wait loop; a
  // peer that has not arrived (busy elsewhere, or hung) cannot answer.
  std::vector<int> waiting_for;
  for (auto& p : peers_) {
    // Receives of point-to-point messages in flight belong to no collective.
    bool collective_recv = std::any_of(p.posted.begin(), p.posted.end(), [](const PostedRecv& r) {
      return !(r.key.seq & kP2PSeqBit);
    });
    if (collective_recv || !p.cma_sends.empty() || p.rank == mail_waiting_for_) {
      waiting_for.push_back(p.rank);
    }
  }
  probe_replies_.clear();
  for (auto& p : peers_) {
    if (!p.open) continue;
    FrameHeader h =
        make_header(FrameType::kProbe, comm_id_, rank_, MsgKey{cur_seq_, 0}, cur_fp_, 0, 0, 0);
    enqueue_frame(p, h, nullptr, nullptr);
    drive_writes(p);
  }
  auto probe_deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(probe_seconds_));
  while (Clock::now() < probe_deadline && int(probe_replies_.size()) < size_ - 1) {
    if (!progress()) poll_sockets(std::max(1, std::min(ms_until(probe_deadline), 5)));
  }
  std::vector<int> arrived, missing;
  std::string details;
  for (auto& p : peers_) {
    if (p.rank == rank_) continue;
    auto it = probe_replies_.find(p.rank);
    bool here = it != probe_replies_.end() && it->second.in_op && it->second.seq >= cur_seq_;
    (here ? arrived : missing).push_back(p.rank);
    if (!here) {
      details += it == probe_replies_.end()
                     ? str("; rank ", p.rank, " did not answer a probe")
                     : str("; rank ", p.rank, " is at op seq ", it->second.seq,
                           it->second.in_op ? "" : " (idle)");
    }
  }
  // The wording keeps " timeout " as a word: tools (torch's own tests among them) look for it.
  double waited = std::chrono::duration<double>(Clock::now() - op_start_).count();
  double limit = std::chrono::duration<double>(deadline_ - op_start_).count();
  std::string msg = str("rank ", rank_, " timed out after ", waited, " s in ", op_description(),
                        " (the op timeout of ", limit, " s, then up to ", probe_seconds_,
                        " s probing the other ranks): ");
  if (!missing.empty()) {
    msg += str("ranks ", rank_list(missing), " have not arrived", details);
    if (!arrived.empty()) msg += str("; ranks ", rank_list(arrived), " are waiting in this op");
  } else {
    msg += str("all ranks reached this op; still waiting for data from ranks ",
               rank_list(waiting_for));
  }
  fail<TimeoutError>(msg);
}

void StreamTransport::peer_closed(Peer& p, const std::string& why) {
  // A peer may finish and exit while this rank completes the same op with data it already has:
  // its end of stream is an error only for the ops that still need it.
  p.open = false;
  p.closed_reason = why;
  if (!p.posted.empty() || !p.sendq.empty() || !p.cma_sends.empty() ||
      p.rstate == ReadState::kPayload || p.hdr_got > 0) {
    peer_lost(p, why);
  }
}

void StreamTransport::check_open(const Peer& p) {
  if (!p.closed_reason.empty()) peer_lost(p, p.closed_reason);
}

void StreamTransport::peer_lost(const Peer& p, const std::string& why) {
  std::string when = in_op_ ? "during " + op_description() : std::string("between ops");
  fail<PeerError>(str("rank ", rank_, " lost rank ", p.rank, " ", when, ": ", why), p.rank);
}

template <typename E>
void StreamTransport::fail(const std::string& msg, int skip_peer) {
  if (error_) std::rethrow_exception(error_);  // the first error wins; later ones follow from it
  GW_LOG(kWarn, msg);
  error_ = std::make_exception_ptr(E(msg));
  shut_down(msg, skip_peer);
  std::rethrow_exception(error_);
}

void StreamTransport::shut_down(const std::string& reason, int skip_peer) {
  // Best effort: tell each peer why, then half-close so it reads the reason before EOF.
  // Sockets stay open until destruction so no RST discards what was sent.
  std::string text = reason.substr(0, 65536);
  for (auto& p : peers_) {
    if (!p.open) continue;
    if (p.rank != skip_peer && (p.sendq.empty() || p.sendq.front().sent == 0)) {
      p.sendq.clear();
      FrameHeader h = make_header(FrameType::kAbort, comm_id_, rank_, MsgKey{cur_seq_, 0}, cur_fp_,
                                  0, text.size(), text.size());
      iovec iov[2] = {{&h, kHeaderBytes}, {const_cast<char*>(text.data()), text.size()}};
      std::string ignored;
      (void)p.ch->writev(iov, 2, &ignored);
    }
    p.ch->shutdown_write();
    p.open = false;
    p.sendq.clear();
    p.posted.clear();
    p.unexpected.clear();
    p.cma_sends.clear();
  }
}

void StreamTransport::abort(const std::string& reason) {
  if (error_) return;
  std::string msg = str("rank ", rank_, " aborted the communicator: ", reason);
  error_ = std::make_exception_ptr(PeerError(msg));
  shut_down(reason, -1);
}

}  // namespace gw
