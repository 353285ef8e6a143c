// Allreduce algorithms and the choice between them.
#include <cmath>
#include <cstring>

#include "gradwire/collectives/collectives.h"
#include "gradwire/collectives/cost_model.h"
#include "gradwire/collectives/ring.h"
#include "gradwire/common/error.h"
#include "gradwire/common/logging.h"
#include "gradwire/reduce/reduce.h"

namespace gw {

void allreduce_ring(const OpContext& ctx, void* buf_v, size_t count, DType dtype, ReduceOp op) {
  char* buf = static_cast<char*>(buf_v);
  Segments segs = Segments::even(count, ctx.size);
  RingAllgather allgather(ctx, buf, segs, dtype_size(dtype), 1);
  allgather.post_receives();  // see RingAllgather
  ring_reduce_scatter(ctx, buf, segs, dtype, op, 1);
  if (op == ReduceOp::kAvg) {
    int own = ctx.mod(ctx.rank + 1);
    divide_by(buf + segs.offset[own] * dtype_size(dtype), segs.len[own], dtype, ctx.size);
  }
  allgather.run();
}

namespace {

// Recursive doubling over the largest power of two p <= n. The n - p extra ranks first fold
// their data into a partner and get the result back at the end. Both sides of every exchange
// reduce the same two operands, so every rank ends with bit-identical results. `Link` moves the
// messages: as frames (FrameLink) or through mailboxes (MailLinkRD); the exchanges and the
// operand order are the same, so both give bit-identical results too.
template <typename Link>
void recursive_doubling(const OpContext& ctx, char* buf, size_t count, DType dtype, ReduceOp op,
                        Link& link) {
  const int n = ctx.size, r = ctx.rank;
  int p2 = 1;
  while (p2 * 2 <= n) p2 *= 2;
  const int extra = n - p2;
  constexpr uint32_t kFoldTag = 0, kUnfoldTag = 1;
  if (r >= p2) {
    link.send_then_recv(r - p2, kFoldTag, kUnfoldTag, buf);
    return;
  }
  if (r < extra) link.recv_reduce(r + p2, kFoldTag, buf);
  uint32_t tag = 2;
  for (int mask = 1; mask < p2; mask <<= 1, ++tag) link.exchange_reduce(r ^ mask, tag, buf);
  if (op == ReduceOp::kAvg) divide_by(buf, count, dtype, n);
  if (r < extra) link.send(r + p2, kUnfoldTag, buf);
}

// Posted sends and receives; the partner's data is staged in `tmp` because our buffer is being
// sent while it arrives.
struct FrameLink {
  const OpContext& ctx;
  size_t bytes, count;
  DType dtype;
  ReduceOp op;
  std::vector<char> tmp;

  void send_then_recv(int peer, uint32_t send_tag, uint32_t recv_tag, char* buf) {
    Request sreq, rreq;
    ctx.send(peer, send_tag, buf, bytes, &sreq);
    ctx.recv(peer, recv_tag, buf, bytes, &rreq);
    ctx.wait(&sreq);
    ctx.wait(&rreq);
  }
  void recv_reduce(int peer, uint32_t tag, char* buf) {
    Request rreq;
    ctx.recv(peer, tag, tmp.data(), bytes, &rreq);
    ctx.wait(&rreq);
    reduce_into(buf, tmp.data(), count, dtype, op);
  }
  void exchange_reduce(int partner, uint32_t tag, char* buf) {
    Request sreq, rreq;
    ctx.recv(partner, tag, tmp.data(), bytes, &rreq);
    ctx.send(partner, tag, buf, bytes, &sreq);
    ctx.wait(&rreq);
    ctx.wait(&sreq);  // buf is about to change: the send must have left it
    reduce_into(buf, tmp.data(), count, dtype, op);
  }
  void send(int peer, uint32_t tag, const char* buf) {
    Request sreq;
    ctx.send(peer, tag, buf, bytes, &sreq);
    ctx.wait(&sreq);
  }
};

// Mailboxes (Transport::mail_send / mail_recv): a send has copied the buffer when it returns,
// so the partner's data is reduced straight from the mailbox into it.
struct MailLinkRD {
  const OpContext& ctx;
  size_t bytes;
  DType dtype;
  ReduceOp op;

  void send_then_recv(int peer, uint32_t send_tag, uint32_t recv_tag, char* buf) {
    send(peer, send_tag, buf);
    ctx.transport->mail_recv(peer, MsgKey{ctx.seq, recv_tag}, ctx.fp, buf, bytes, false, dtype, op);
  }
  void recv_reduce(int peer, uint32_t tag, char* buf) {
    ctx.transport->mail_recv(peer, MsgKey{ctx.seq, tag}, ctx.fp, buf, bytes, true, dtype, op);
  }
  void exchange_reduce(int partner, uint32_t tag, char* buf) {
    send(partner, tag, buf);
    recv_reduce(partner, tag, buf);
  }
  void send(int peer, uint32_t tag, const char* buf) {
    ctx.transport->mail_send(peer, MsgKey{ctx.seq, tag}, ctx.fp, buf, bytes);
  }
};

}  // namespace

void allreduce_recursive_doubling(const OpContext& ctx, void* buf, size_t count, DType dtype,
                                  ReduceOp op) {
  const size_t bytes = count * dtype_size(dtype);
  FrameLink link{ctx, bytes, count, dtype, op, std::vector<char>(bytes)};
  recursive_doubling(ctx, static_cast<char*>(buf), count, dtype, op, link);
}

void allreduce_recursive_doubling_mail(const OpContext& ctx, void* buf, size_t count, DType dtype,
                                       ReduceOp op) {
  const size_t bytes = count * dtype_size(dtype);
  GW_ENFORCE(bytes <= ctx.transport->mail_bytes(), "allreduce of ", bytes,
             " bytes does not fit the mailboxes");
  MailLinkRD link{ctx, bytes, dtype, op};
  recursive_doubling(ctx, static_cast<char*>(buf), count, dtype, op, link);
}

AllreduceAlgo choose_allreduce_algo(const OpContext& ctx, size_t bytes) {
  const std::string& pinned = ctx.config->algo;
  if (pinned == "ring") return AllreduceAlgo::kRing;
  if (pinned == "rd") return AllreduceAlgo::kRecursiveDoubling;
  CostModel m = CostModel::for_context(ctx);
  return m.ring_allreduce(ctx.size, bytes) < m.recursive_doubling_allreduce(ctx.size, bytes)
             ? AllreduceAlgo::kRing
             : AllreduceAlgo::kRecursiveDoubling;
}

void allreduce(const OpContext& ctx, void* buf, size_t count, DType dtype, ReduceOp op) {
  if (count == 0 || ctx.size == 1) return;  // AVG over one rank is the identity
  size_t bytes = count * dtype_size(dtype);
  AllreduceAlgo algo = choose_allreduce_algo(ctx, bytes);
  if (algo == AllreduceAlgo::kRing && count < size_t(ctx.size)) {
    algo = AllreduceAlgo::kRecursiveDoubling;  // fewer elements than ranks: ring segments empty
  }
  // Recursive doubling whose messages fit the mailboxes uses them: every rank decides alike
  // (mail_bytes() is the same on all ranks), and the result is the same as over frames.
  const bool mail =
      algo == AllreduceAlgo::kRecursiveDoubling && bytes <= ctx.transport->mail_bytes();
  if (log_enabled(LogLevel::kDebug)) {
    CostModel m = CostModel::for_context(ctx);
    double ring = m.ring_allreduce(ctx.size, bytes);
    double rd = m.recursive_doubling_allreduce(ctx.size, bytes);
    bool is_ring = algo == AllreduceAlgo::kRing;
    GW_LOG(kDebug, "allreduce seq ", ctx.seq, ": ", bytes, " B on ", ctx.size, " ranks over ",
           m.link, ": ",
           is_ring ? "ring"
           : mail  ? "recursive doubling (mailboxes)"
                   : "recursive doubling",
           ", predicted ", (is_ring ? ring : rd) * 1e3, " ms (",
           is_ring ? "recursive doubling " : "ring ", (is_ring ? rd : ring) * 1e3, " ms)",
           ctx.config->algo == "auto" ? "" : " [pinned by GRADWIRE_ALGO]");
  }
  if (algo == AllreduceAlgo::kRing) {
    allreduce_ring(ctx, buf, count, dtype, op);
  } else if (mail) {
    allreduce_recursive_doubling_mail(ctx, buf, count, dtype, op);
  } else {
    allreduce_recursive_doubling(ctx, buf, count, dtype, op);
  }
}

}  // namespace gw
