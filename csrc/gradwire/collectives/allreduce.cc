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
  ring_reduce_scatter(ctx, buf, segs, dtype, op, 1);
  if (op == ReduceOp::kAvg) {
    int own = ctx.mod(ctx.rank + 1);
    divide_by(buf + segs.offset[own] * dtype_size(dtype), segs.len[own], dtype, ctx.size);
  }
  ring_allgather(ctx, buf, segs, dtype_size(dtype), 1);
}

// Recursive doubling over the largest power of two p <= n. The n - p extra ranks first fold
// their data into a partner and get the result back at the end. Both sides of every exchange
// reduce the same two operands, so every rank ends with bit-identical results.
void allreduce_recursive_doubling(const OpContext& ctx, void* buf_v, size_t count, DType dtype,
                                  ReduceOp op) {
  const int n = ctx.size, r = ctx.rank;
  const size_t bytes = count * dtype_size(dtype);
  char* buf = static_cast<char*>(buf_v);
  int p2 = 1;
  while (p2 * 2 <= n) p2 *= 2;
  const int extra = n - p2;
  constexpr uint32_t kFoldTag = 0, kUnfoldTag = 1;
  std::vector<char> tmp(bytes);
  Request sreq, rreq;
  if (r >= p2) {
    ctx.send(r - p2, kFoldTag, buf, bytes, &sreq);
    ctx.recv(r - p2, kUnfoldTag, buf, bytes, &rreq);
    ctx.wait(&sreq);
    ctx.wait(&rreq);
    return;
  }
  if (r < extra) {
    ctx.recv(r + p2, kFoldTag, tmp.data(), bytes, &rreq);
    ctx.wait(&rreq);
    reduce_into(buf, tmp.data(), count, dtype, op);
  }
  uint32_t tag = 2;
  for (int mask = 1; mask < p2; mask <<= 1, ++tag) {
    int partner = r ^ mask;
    ctx.recv(partner, tag, tmp.data(), bytes, &rreq);
    ctx.send(partner, tag, buf, bytes, &sreq);
    ctx.wait(&rreq);
    ctx.wait(&sreq);  // buf is about to change: the send must have left it
    reduce_into(buf, tmp.data(), count, dtype, op);
  }
  if (op == ReduceOp::kAvg) divide_by(buf, count, dtype, n);
  if (r < extra) {
    ctx.send(r + p2, kUnfoldTag, buf, bytes, &sreq);
    ctx.wait(&sreq);
  }
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
  if (log_enabled(LogLevel::kDebug)) {
    CostModel m = CostModel::for_context(ctx);
    double ring = m.ring_allreduce(ctx.size, bytes);
    double rd = m.recursive_doubling_allreduce(ctx.size, bytes);
    bool is_ring = algo == AllreduceAlgo::kRing;
    GW_LOG(kDebug, "allreduce seq ", ctx.seq, ": ", bytes, " B on ", ctx.size, " ranks over ",
           m.link, ": ", is_ring ? "ring" : "recursive doubling", ", predicted ",
           (is_ring ? ring : rd) * 1e3, " ms (", is_ring ? "recursive doubling " : "ring ",
           (is_ring ? rd : ring) * 1e3, " ms)",
           ctx.config->algo == "auto" ? "" : " [pinned by GRADWIRE_ALGO]");
  }
  if (algo == AllreduceAlgo::kRing) {
    allreduce_ring(ctx, buf, count, dtype, op);
  } else {
    allreduce_recursive_doubling(ctx, buf, count, dtype, op);
  }
}

}  // namespace gw
