// Pairwise all-to-all with uneven splits, and the dissemination barrier.
#include <cstring>

#include "gradwire/collectives/collectives.h"
#include "gradwire/common/error.h"

namespace gw {

void alltoall(const OpContext& ctx, const void* in_v, void* out_v,
              const std::vector<size_t>& send_counts, const std::vector<size_t>& send_displs,
              const std::vector<size_t>& recv_counts, const std::vector<size_t>& recv_displs,
              DType dtype) {
  const int n = ctx.size, r = ctx.rank;
  const size_t es = dtype_size(dtype);
  const char* in = static_cast<const char*>(in_v);
  char* out = static_cast<char*>(out_v);
  GW_CHECK_ARG(send_counts[r] == recv_counts[r], "alltoall on rank ", r, ": sends ", send_counts[r],
               " elements to itself but expects ", recv_counts[r]);
  std::vector<Request> sreq(n), rreq(n);
  // Step s pairs rank r with r + s (send) and r - s (receive): every link is busy once per step.
  for (int s = 1; s < n; ++s) {
    int from = ctx.mod(r - s);
    ctx.recv(from, 0, out + recv_displs[from] * es, recv_counts[from] * es, &rreq[from]);
  }
  for (int s = 1; s < n; ++s) {
    int to = ctx.mod(r + s);
    ctx.send(to, 0, in + send_displs[to] * es, send_counts[to] * es, &sreq[to]);
  }
  if (send_counts[r])
    memmove(out + recv_displs[r] * es, in + send_displs[r] * es, send_counts[r] * es);
  for (int p = 0; p < n; ++p) {
    if (p == r) continue;
    ctx.wait(&rreq[p]);
    ctx.wait(&sreq[p]);
  }
}

// Dissemination barrier: in step k every rank tells rank + k and hears from rank - k. Each step
// uses another ordered pair of ranks, so through mailboxes (when the transport has them) each
// pair carries at most one message per barrier, as mailboxes require.
void barrier(const OpContext& ctx) {
  const int n = ctx.size, r = ctx.rank;
  const bool mail = ctx.transport->mail_bytes() > 0;
  uint32_t tag = 0;
  for (int k = 1; k < n; k <<= 1, ++tag) {
    if (mail) {
      const MsgKey key{ctx.seq, tag};
      ctx.transport->mail_send(ctx.mod(r + k), key, ctx.fp, nullptr, 0);
      ctx.transport->mail_recv(ctx.mod(r - k), key, ctx.fp, nullptr, 0, false, DType::kUInt8,
                               ReduceOp::kSum);
      continue;
    }
    Request sreq, rreq;
    ctx.recv(ctx.mod(r - k), tag, nullptr, 0, &rreq);
    ctx.send(ctx.mod(r + k), tag, nullptr, 0, &sreq);
    ctx.wait(&rreq);
    ctx.wait(&sreq);
  }
}

}  // namespace gw
