// Ring allgather and reduce_scatter (on top of ring.h), and the rooted gather/scatter.
#include <cstring>

#include "gradwire/collectives/collectives.h"
#include "gradwire/collectives/ring.h"
#include "gradwire/reduce/reduce.h"

namespace gw {

void allgather(const OpContext& ctx, const void* in, void* out_v, size_t count, DType dtype) {
  const size_t es = dtype_size(dtype);
  char* out = static_cast<char*>(out_v);
  if (count == 0) return;
  if (out + ctx.rank * count * es != in) memcpy(out + ctx.rank * count * es, in, count * es);
  ring_allgather(ctx, out, Segments::blocks(count, ctx.size), es, 0);
}

void reduce_scatter(const OpContext& ctx, const void* in, void* out, size_t count, DType dtype,
                    ReduceOp op) {
  const size_t es = dtype_size(dtype);
  if (count == 0) return;
  const size_t total = count * ctx.size * es;
  std::vector<char> work(static_cast<const char*>(in), static_cast<const char*>(in) + total);
  ring_reduce_scatter(ctx, work.data(), Segments::blocks(count, ctx.size), dtype, op, 0);
  char* mine = work.data() + ctx.rank * count * es;
  if (op == ReduceOp::kAvg) divide_by(mine, count, dtype, ctx.size);
  memcpy(out, mine, count * es);
}

void gather(const OpContext& ctx, const void* in, void* out_v, size_t count, DType dtype,
            int root) {
  const size_t bytes = count * dtype_size(dtype);
  if (ctx.rank != root) {
    Request req;
    ctx.send(root, 0, in, bytes, &req);
    ctx.wait(&req);
    return;
  }
  char* out = static_cast<char*>(out_v);
  std::vector<Request> reqs(ctx.size);
  for (int p = 0; p < ctx.size; ++p) {
    if (p == root) continue;
    ctx.recv(p, 0, out + p * bytes, bytes, &reqs[p]);
  }
  if (bytes) memcpy(out + root * bytes, in, bytes);
  for (int p = 0; p < ctx.size; ++p) {
    if (p != root) ctx.wait(&reqs[p]);
  }
}

void scatter(const OpContext& ctx, const void* in_v, void* out, size_t count, DType dtype,
             int root) {
  const size_t bytes = count * dtype_size(dtype);
  if (ctx.rank != root) {
    Request req;
    ctx.recv(root, 0, out, bytes, &req);
    ctx.wait(&req);
    return;
  }
  const char* in = static_cast<const char*>(in_v);
  std::vector<Request> reqs(ctx.size);
  for (int p = 0; p < ctx.size; ++p) {
    if (p == root) continue;
    ctx.send(p, 0, in + p * bytes, bytes, &reqs[p]);
  }
  if (bytes) memcpy(out, in + root * bytes, bytes);
  for (int p = 0; p < ctx.size; ++p) {
    if (p != root) ctx.wait(&reqs[p]);
  }
}

}  // namespace gw
