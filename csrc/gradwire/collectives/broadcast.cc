// Binomial-tree broadcast, pipelined in chunks: a rank forwards chunk c to its children as soon
// as it has it, while later chunks are still arriving.
#include <algorithm>

#include "gradwire/collectives/collectives.h"

namespace gw {

void broadcast(const OpContext& ctx, void* buf_v, size_t bytes, int root) {
  const int n = ctx.size;
  if (n == 1) return;
  char* buf = static_cast<char*>(buf_v);
  const int vr = ctx.mod(ctx.rank - root);  // rank relative to the root
  const size_t chunk = std::max<size_t>(1, ctx.config->ring_chunk_bytes);
  const size_t chunks = std::max<size_t>(1, (bytes + chunk - 1) / chunk);
  auto chunk_len = [&](size_t c) { return std::min(chunk, bytes - std::min(bytes, c * chunk)); };

  int parent = -1;
  int mask = 1;
  while (mask < n) {
    if (vr & mask) {
      parent = ctx.mod(vr - mask + root);
      break;
    }
    mask <<= 1;
  }
  std::vector<int> children;
  for (int m = mask >> 1; m > 0; m >>= 1) {
    if (vr + m < n) children.push_back(ctx.mod(vr + m + root));
  }
  std::vector<Request> rreq(parent >= 0 ? chunks : 0), sreq(children.size() * chunks);
  for (size_t c = 0; parent >= 0 && c < chunks; ++c) {
    ctx.recv(parent, uint32_t(c), buf + c * chunk, chunk_len(c), &rreq[c]);
  }
  for (size_t c = 0; c < chunks; ++c) {
    if (parent >= 0) ctx.wait(&rreq[c]);
    for (size_t i = 0; i < children.size(); ++i) {
      ctx.send(children[i], uint32_t(c), buf + c * chunk, chunk_len(c), &sreq[i * chunks + c]);
    }
  }
  ctx.wait_all(sreq);
}

}  // namespace gw
