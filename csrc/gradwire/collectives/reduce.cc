// Binomial-tree reduce towards the root. Non-root ranks accumulate in scratch space so their
// input stays unchanged; the tree fixes the order of reduction, so results are deterministic.
#include "gradwire/reduce/reduce.h"

#include <cstring>

#include "gradwire/collectives/collectives.h"

namespace gw {

void reduce(const OpContext& ctx, void* buf, size_t count, DType dtype, ReduceOp op, int root) {
  const int n = ctx.size;
  const size_t bytes = count * dtype_size(dtype);
  if (n == 1 || count == 0) {
    if (op == ReduceOp::kAvg) divide_by(buf, count, dtype, n);
    return;
  }
  const int vr = ctx.mod(ctx.rank - root);
  std::vector<char> scratch;
  char* acc = static_cast<char*>(buf);
  if (vr != 0) {
    scratch.assign(acc, acc + bytes);
    acc = scratch.data();
  }
  Request req;
  for (int mask = 1; mask < n; mask <<= 1) {
    if (vr & mask) {
      ctx.send(ctx.mod(vr - mask + root), uint32_t(mask), acc, bytes, &req);
      ctx.wait(&req);
      return;
    }
    if (vr + mask < n) {
      ctx.recv_reduce(ctx.mod(vr + mask + root), uint32_t(mask), acc, bytes, dtype, op, &req);
      ctx.wait(&req);
    }
  }
  if (op == ReduceOp::kAvg) divide_by(acc, count, dtype, n);
}

}  // namespace gw
