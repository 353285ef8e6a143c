// Small messages through same-host mailboxes (docs/wire-protocol.md, "Mailboxes"; the slot
// protocol is in shm/mailbox.h). When every peer of a communicator is on this host, each ordered
// pair of ranks has one mailbox in the receiver's segment. An algorithm whose messages all fit
// (collectives/allreduce.cc: recursive doubling for small allreduces) puts each message into
// the partner's mailbox and takes the partner's from its own: no frame, no send queue, no
// posted receive, and the reduction reads straight from the mailbox.
//
// Invariants:
//  * Whether an op uses mailboxes depends only on what every rank agrees on (the op's
//    fingerprint, mail_bytes(), which is the minimum over all ranks' segments, and the
//    configuration), so both ends of a pair always use the same path; a message on the other
//    path is a mismatch and is reported as one (check_mail, check_stray_mail, and frames from
//    the rings go through the usual check_incoming while a mailbox wait serves them).
//  * Each message of an op is taken by its receiver within that op, and one message per pair
//    is in flight, so a mailbox holds either nothing new, the message of the op the receiver is
//    in, or (a peer being one op ahead) that of its next op.
//  * Waiting spins (yielding the core when ranks outnumber cores or the peer last waited on this
//    CPU), serving the rings now and then so aborts, probes and frames of a mismatched op are
//    seen, then sleeps on this rank's doorbell; every wait has the op's deadline, and a dead
//    peer fails it. An op's first mailbox call also serves frames already waiting in the rings,
//    since a mailbox op may complete without waiting at all.
#include <sched.h>
#include <string.h>

#include "gradwire/common/error.h"
#include "gradwire/reduce/reduce.h"
#include "gradwire/transport/stream_transport.h"

namespace gw {

void StreamTransport::mail_send(int dst, const MsgKey& key, const OpFingerprint& fp,
                                const void* data, size_t bytes) {
  throw_if_failed();
  Peer& p = peer(dst);
  GW_ENFORCE(mail_bytes_ > 0 && bytes <= mail_bytes_, "mail_send of ", bytes,
             " bytes with mailboxes of ", mail_bytes_);
  check_open(p);
  if (!mail_op_) begin_mail_op();
  const uint64_t k = p.mail_sent + 1;
  if (!p.mail.out.free_for(k)) mail_wait(p, true, k);
  shm::MailHeader meta;
  meta.seq = key.seq;
  meta.tag = key.tag;
  meta.fp_kind = uint8_t(fp.kind);
  meta.fp_dtype = uint8_t(fp.dtype);
  meta.fp_redop = fp.redop;
  meta.fp_root = fp.root;
  meta.fp_count = fp.count;
  p.mail.out.put(k, meta, data, bytes);
  p.mail_sent = k;
  p.mail.peer_bell->ring_if_sleeping();
  bytes_sent_ += bytes;
  ++mail_messages_;
}

void StreamTransport::mail_recv(int src, const MsgKey& key, const OpFingerprint& fp, void* data,
                                size_t bytes, bool reduce, DType dtype, ReduceOp op) {
  throw_if_failed();
  Peer& p = peer(src);
  GW_ENFORCE(mail_bytes_ > 0 && bytes <= mail_bytes_, "mail_recv of ", bytes,
             " bytes with mailboxes of ", mail_bytes_);
  if (!mail_op_) begin_mail_op();
  const uint64_t k = p.mail_taken + 1;
  if (p.mail.in.posted() < k) mail_wait(p, false, k);
  check_mail(p, p.mail.in.meta(), key, fp, bytes);
  if (reduce) {
    reduce_into(data, p.mail.in.payload(), bytes / dtype_size(dtype), dtype, op);
  } else if (bytes) {
    memcpy(data, p.mail.in.payload(), bytes);
  }
  p.mail.in.take(k);
  p.mail_taken = k;
  p.mail.peer_bell->ring_if_sleeping();  // the peer may wait to put its next message
  bytes_received_ += bytes;
}

// The op's first mailbox call. A mailbox op may complete without ever waiting, and so without
// reading the rings; frames waiting there are handled now, as the first wait of an op over
// frames would: an ABORT fails the op, and a frame of an earlier op or of this one (a peer that
// ran an op differently, e.g. both ranks as broadcast root) is the mismatch it is.
void StreamTransport::begin_mail_op() {
  mail_op_ = true;
  for (auto& p : peers_) {
    if (p.open && p.ch->may_have_input()) {
      progress();
      return;
    }
  }
}

// Sending: until the peer has taken our message k - 1. Receiving: until its message k is in our
// mailbox. The mailbox is looked at on every round; the rest (aborts, the rings, liveness, the
// clock) every 16th, which keeps the reaction to an arriving message within a few loads.
void StreamTransport::mail_wait(Peer& p, bool sending, uint64_t k) {
  auto ready = [&] { return sending ? p.mail.out.free_for(k) : p.mail.in.posted() >= k; };
  mail_waiting_for_ = p.rank;
  auto idle_since = Clock::now();
  // Yield while spinning when the peer may be waiting for this core (see wait()).
  bool yielding = yield_ || shares_core(p, publish_cpu());
  for (uint32_t round = 1;; ++round) {
    if (ready()) break;
    if (round % 16 != 0) {
      if (yielding) sched_yield();
      continue;
    }
    throw_if_failed();
    progress();
    if (ready()) break;
    if (!p.open) peer_lost(p, p.closed_reason);
    // The peer sent this op's data as frames: it does not run the op as this rank does.
    for (auto& u : p.unexpected) {
      if (u.key.seq == cur_seq_) unclaimed(p, u.fp, cur_fp_, u.key);
    }
    auto now = Clock::now();
    if (now >= deadline_) on_timeout();
    if (round % 256 == 0) yielding = yield_ || shares_core(p, publish_cpu());
    if (now - idle_since < spin_) continue;
    // Sleep on our doorbell: the peer rings it after putting or taking when it sees us armed,
    // and ring writes always ring it (doorbell.h, two-phase sleep).
    uint32_t seen = bell_->arm();
    if (!ready() && !progress()) bell_->sleep(seen, std::max(1, std::min(ms_until(deadline_), 20)));
    bell_->disarm();
    poll_sockets(0);  // liveness: a dead peer's socket says so
    idle_since = Clock::now();
  }
  mail_waiting_for_ = -1;
}

void StreamTransport::check_mail(const Peer& p, const shm::MailHeader& m, const MsgKey& key,
                                 const OpFingerprint& fp, size_t bytes) {
  OpFingerprint theirs = header_fingerprint(m);
  check_match(p, theirs, fp, key.seq, m.bytes, bytes);  // names both calls when they differ
  if (m.seq != key.seq || m.tag != key.tag) {
    fail<MismatchError>(str("collective mismatch at op seq ", key.seq, ": rank ", p.rank,
                            " sent rank ", rank_, " a message of ", theirs.describe(),
                            " for op seq ", m.seq, " (tag ", m.tag, ") where rank ", rank_, "'s ",
                            fp.describe(), " expects op seq ", key.seq, " (tag ", key.tag,
                            "): the ranks do not run the same sequence of ops"));
  }
}

// A message waiting in a mailbox that no mailbox receive will take: one for an op this rank has
// finished, or for the current op when it exchanges frames (op_done: the op is over, so one for
// it is left over). A message for a later op is the peer being ahead and waits for its op.
void StreamTransport::check_stray_mail(bool op_done) {
  for (auto& p : peers_) {
    if (!p.mail.in.valid() || p.mail.in.posted() <= p.mail_taken) continue;
    const shm::MailHeader& m = p.mail.in.meta();
    if (m.seq > cur_seq_) continue;
    if (m.seq == cur_seq_ && !op_done && mail_op_) continue;
    const OpFingerprint* ran = m.seq == cur_seq_ ? &cur_fp_ : recent_op(m.seq);
    OpFingerprint theirs = header_fingerprint(m);
    unclaimed(p, theirs, ran ? *ran : theirs, MsgKey{m.seq, m.tag});
  }
}

}  // namespace gw
