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
  const int p2 = pow2_floor(n);
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

// Posted sends and receives; in exchange_reduce the partner's data is staged in `tmp` because
// our buffer is being sent while it arrives (the other calls need no `tmp`).
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
  // Nothing is sent from buf meanwhile, so the data is reduced into it as it arrives.
  void recv_reduce(int peer, uint32_t tag, char* buf) {
    Request rreq;
    ctx.recv_reduce(peer, tag, buf, bytes, dtype, op, &rreq);
    ctx.wait(&rreq);
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

// Over p = 2^floor(log2 n) ranks; the n - p extra ranks fold their data into rank r - p first
// and get the result back at the end, as in recursive doubling. Reduce-scatter: at the step with
// bit `mask`, a rank keeps the half of its current range on its side of the bit, sends the other
// half to rank r ^ mask and reduces that rank's copy of its half into place; after log2(p) steps
// it owns the full reduction of one p-th. Allgather retraces the steps in reverse, exchanging
// owned ranges. log2(p) messages each way instead of the ring's p - 1, the same bytes: every
// element is reduced by exactly one rank, so all ranks end with identical values.
void allreduce_halving_doubling(const OpContext& ctx, void* buf_v, size_t count, DType dtype,
                                ReduceOp op) {
  char* buf = static_cast<char*>(buf_v);
  const size_t es = dtype_size(dtype);
  const int n = ctx.size, r = ctx.rank;
  const int p2 = pow2_floor(n);
  const int extra = n - p2;
  constexpr uint32_t kFoldTag = 0, kUnfoldTag = 1, kHalvingTag = 2, kDoublingTag = 34;
  FrameLink fold{ctx, count * es, count, dtype, op, {}};  // recursive doubling's fold and unfold
  if (r >= p2) {
    fold.send_then_recv(r - p2, kFoldTag, kUnfoldTag, buf);
    return;
  }
  if (r < extra) fold.recv_reduce(r + p2, kFoldTag, buf);
  size_t lo = 0, hi = count;
  std::vector<std::pair<size_t, size_t>> ranges;  // the range before each halving step
  uint32_t step = 0;
  for (int mask = p2 >> 1; mask >= 1; mask >>= 1, ++step) {
    const size_t mid = lo + (hi - lo) / 2;
    const bool lower = (r & mask) == 0;
    const size_t keep_lo = lower ? lo : mid, keep_hi = lower ? mid : hi;
    const size_t give_lo = lower ? mid : lo, give_hi = lower ? hi : mid;
    Request s, rr;
    ctx.recv_reduce(r ^ mask, kHalvingTag + step, buf + keep_lo * es, (keep_hi - keep_lo) * es,
                    dtype, op, &rr);
    ctx.send(r ^ mask, kHalvingTag + step, buf + give_lo * es, (give_hi - give_lo) * es, &s);
    ctx.wait(&rr);
    ctx.wait(&s);
    ranges.push_back({lo, hi});
    lo = keep_lo;
    hi = keep_hi;
  }
  if (op == ReduceOp::kAvg) divide_by(buf + lo * es, hi - lo, dtype, n);
  step = 0;
  for (int mask = 1; mask < p2; mask <<= 1, ++step) {
    const auto [plo, phi] = ranges.back();
    ranges.pop_back();
    // The partner owns the rest of the range this rank held before the matching halving step.
    const size_t other_lo = lo == plo ? hi : plo, other_hi = lo == plo ? phi : lo;
    Request s, rr;
    ctx.recv(r ^ mask, kDoublingTag + step, buf + other_lo * es, (other_hi - other_lo) * es, &rr);
    ctx.send(r ^ mask, kDoublingTag + step, buf + lo * es, (hi - lo) * es, &s);
    ctx.wait(&rr);
    ctx.wait(&s);
    lo = plo;
    hi = phi;
  }
  if (r < extra) fold.send(r + p2, kUnfoldTag, buf);
}

namespace {

// Halving-doubling is a candidate from 4 ranks (on 2 it is the ring without its pipelining) and
// up to 512 KiB: measured on 4 ranks over shared memory (2 cores) it beat the ring 1.3-2x at
// 16-256 KiB, was as often slower as faster at 1-4 MiB and lost at 16 MiB, where the ring's
// chunked pipeline and early-posted allgather keep its pieces in cache (docs/benchmarks.md).
constexpr size_t kHalvingDoublingMaxBytes = 512 << 10;
bool halving_doubling_eligible(const OpContext& ctx, size_t bytes) {
  return ctx.size >= 4 && bytes <= kHalvingDoublingMaxBytes;
}

}  // namespace

AllreduceAlgo choose_allreduce_algo(const OpContext& ctx, size_t bytes) {
  const std::string& pinned = ctx.config->algo;
  if (pinned == "ring") return AllreduceAlgo::kRing;
  if (pinned == "rd") return AllreduceAlgo::kRecursiveDoubling;
  if (pinned == "hd") return AllreduceAlgo::kHalvingDoubling;
  CostModel m = CostModel::for_context(ctx);
  double ring = m.ring_allreduce(ctx.size, bytes);
  double rd = m.recursive_doubling_allreduce(ctx.size, bytes);
  double hd = halving_doubling_eligible(ctx, bytes) ? m.halving_doubling_allreduce(ctx.size, bytes)
                                                    : HUGE_VAL;
  if (hd < ring && hd < rd) return AllreduceAlgo::kHalvingDoubling;
  return ring < rd ? AllreduceAlgo::kRing : AllreduceAlgo::kRecursiveDoubling;
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
    double hd = m.halving_doubling_allreduce(ctx.size, bytes);
    const char* name = algo == AllreduceAlgo::kRing              ? "ring"
                       : algo == AllreduceAlgo::kHalvingDoubling ? "halving-doubling"
                       : mail                                    ? "recursive doubling (mailboxes)"
                                                                 : "recursive doubling";
    GW_LOG(kDebug, "allreduce seq ", ctx.seq, ": ", bytes, " B on ", ctx.size, " ranks over ",
           m.link, ": ", name, "; predicted ring ", ring * 1e3, " ms, recursive doubling ",
           rd * 1e3, " ms, halving-doubling ", hd * 1e3, " ms",
           halving_doubling_eligible(ctx, bytes) ? "" : " (not a candidate at this size)",
           ctx.config->algo == "auto" ? "" : " [pinned by GRADWIRE_ALGO]");
  }
  if (algo == AllreduceAlgo::kRing) {
    allreduce_ring(ctx, buf, count, dtype, op);
  } else if (algo == AllreduceAlgo::kHalvingDoubling) {
    allreduce_halving_doubling(ctx, buf, count, dtype, op);
  } else if (mail) {
    allreduce_recursive_doubling_mail(ctx, buf, count, dtype, op);
  } else {
    allreduce_recursive_doubling(ctx, buf, count, dtype, op);
  }
}

}  // namespace gw
