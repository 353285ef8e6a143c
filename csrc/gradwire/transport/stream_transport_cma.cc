// Single-copy messages between ranks on one host (docs/wire-protocol.md, "Single copy").
//
//   sender                                   receiver
//   CMA_OFFER {pid, token, buffer address} ->
//                                            reads the buffer with process_vm_readv: into the
//                                            posted receive (through a cache-sized scratch
//                                            buffer when it reduces), or into an unexpected-
//                                            message buffer when no receive is posted yet
//                                         <- CMA_DONE        (sender's request completes)
//                                         <- CMA_REFUSE      (cannot read: sender falls back
//                                                             to DATA frames for good)
//
// Invariants: the sender's request completes only on DONE, so the buffer stays untouched while
// the receiver reads it; an offer is always answered at once (an unposted receive is read into
// a buffer, like an eager DATA message), so single copy never makes a send wait for the
// matching receive to be posted, and the send/receive semantics stay those of DATA frames.
#include <string.h>

#include <algorithm>

#include "gradwire/common/error.h"
#include "gradwire/common/logging.h"
#include "gradwire/reduce/reduce.h"
#include "gradwire/transport/shm/cross_memory.h"
#include "gradwire/transport/stream_transport.h"

namespace gw {

bool StreamTransport::cma_eligible(const Peer& p, const MsgKey& key, size_t bytes) const {
  return cma_min_bytes_ > 0 && bytes >= cma_min_bytes_ && p.ch->shared_memory() && !p.cma_refused;
}

void StreamTransport::cma_offer(Peer& p, const MsgKey& key, const OpFingerprint& fp,
                                const char* data, size_t bytes, Request* req) {
  const shm::CmaIdentity& me = shm::own_cma_identity();
  CmaOffer offer{me.pid, me.token_addr, me.token, reinterpret_cast<uint64_t>(data)};
  p.cma_sends.push_back(CmaSend{key, fp, data, bytes, req, offer});
  FrameHeader h =
      make_header(FrameType::kCmaOffer, comm_id_, rank_, key, fp, 0, sizeof(CmaOffer), bytes);
  // The frame's payload points into the list element, which stays put until the answer.
  enqueue_frame(p, h, reinterpret_cast<const char*>(&p.cma_sends.back().offer), nullptr);
}

void StreamTransport::on_cma_offer(Peer& p, const FrameHeader& h) {
  MsgKey key{h.seq, h.tag};
  OpFingerprint fp = header_fingerprint(h);
  check_incoming(p, key, fp);
  CmaOffer offer;
  memcpy(&offer, p.control.data(), sizeof(offer));
  if (p.cma_readable == CmaState::kUnknown) {
    std::string why = shm::cma_verify(shm::CmaIdentity{offer.pid, offer.token_addr, offer.token});
    p.cma_readable = why.empty() ? CmaState::kReadable : CmaState::kUnreadable;
    if (!why.empty()) {
      GW_LOG(kInfo, "rank ", rank_, ": single copy from rank ", p.rank, " unavailable (", why,
             "); its messages come through the shared-memory ring");
    }
  }
  if (p.cma_readable == CmaState::kUnreadable) {
    enqueue_frame(p, make_header(FrameType::kCmaRefuse, comm_id_, rank_, key, fp, 0, 0, 0), nullptr,
                  nullptr);
    return;
  }
  auto it = std::find_if(p.posted.begin(), p.posted.end(),
                         [&](const PostedRecv& r) { return r.key == key; });
  if (it != p.posted.end()) {
    check_match(p, fp, it->fp, key.seq, h.msg_bytes, it->size);
    cma_read_into(p, offer, *it);
    it->got = it->size;
    it->req->done = true;
    p.posted.erase(it);
  } else {
    // No receive posted yet: take the message now, as an eager DATA message would arrive.
    p.unexpected.push_back(Unexpected{key, fp, EarlyBytes(&early_pool_, h.msg_bytes), 0});
    Unexpected& u = p.unexpected.back();
    std::string why = shm::cma_read(offer.pid, offer.data_addr, u.data.data(), u.data.size());
    if (!why.empty()) fail<PeerError>(str("single-copy read from rank ", p.rank, ": ", why), -1);
    u.got = u.data.size();
  }
  bytes_received_ += h.msg_bytes;
  bytes_single_copy_ += h.msg_bytes;
  enqueue_frame(p, make_header(FrameType::kCmaDone, comm_id_, rank_, key, fp, 0, 0, 0), nullptr,
                nullptr);
  drive_writes(p);  // the sender is waiting for it
}

// Reads the offered message into a posted receive. A reducing receive goes through the scratch
// buffer in cache-sized pieces, each reduced into place right after it is read.
void StreamTransport::cma_read_into(Peer& p, const CmaOffer& offer, PostedRecv& r) {
  std::string why;
  if (!r.reduce) {
    why = shm::cma_read(offer.pid, offer.data_addr, r.buf, r.size);
  } else {
    if (p.scratch.empty()) p.scratch.resize(kReducePiece);
    const size_t es = dtype_size(r.dtype);
    const size_t piece = p.scratch.size() / es * es;
    for (size_t off = 0; off < r.size && why.empty(); off += piece) {
      size_t n = std::min(piece, r.size - off);
      why = shm::cma_read(offer.pid, offer.data_addr + off, p.scratch.data(), n);
      if (why.empty()) reduce_into(r.buf + off, p.scratch.data(), n / es, r.dtype, r.op);
    }
  }
  if (!why.empty()) fail<PeerError>(str("single-copy read from rank ", p.rank, ": ", why), -1);
}

void StreamTransport::on_cma_answer(Peer& p, const FrameHeader& h) {
  MsgKey key{h.seq, h.tag};
  auto it = std::find_if(p.cma_sends.begin(), p.cma_sends.end(),
                         [&](const CmaSend& c) { return c.key == key; });
  if (it == p.cma_sends.end()) {
    fail<ProtocolError>(str("rank ", p.rank, " answered a single-copy offer (seq ", key.seq,
                            ", tag ", key.tag, ") that rank ", rank_, " never made"),
                        p.rank);
  }
  if (h.type == uint8_t(FrameType::kCmaDone)) {
    bytes_sent_ += it->bytes;
    it->req->done = true;
  } else {
    // The peer cannot read our memory: this message and all later ones go as DATA frames.
    p.cma_refused = true;
    enqueue_data(p, it->key, it->fp, it->data, it->bytes, it->req);
  }
  p.cma_sends.erase(it);
}

}  // namespace gw
