// The two halves of a ring pipeline, shared by allreduce, reduce_scatter and allgather.
//
// The buffer is cut into `size` segments (Segments). In the allgather half, rank r starts out
// owning segment (r + k) mod n; at step s it sends segment (r + k - s) to its right neighbour and
// receives segment (r + k - s - 1) from its left one. The reduce-scatter half runs the same
// schedule shifted by one, so that afterwards rank r holds the full reduction of segment
// (r + k) mod n. Each segment moves in chunks (GRADWIRE_RING_CHUNK_BYTES, at most kMaxChunks per
// segment) so that a rank forwards chunk c while chunk c + 1 is still in flight.
#pragma once

#include <vector>

#include "gradwire/collectives/context.h"
#include "gradwire/common/dtype.h"

namespace gw {

struct Segments {
  std::vector<size_t> offset;  // in elements
  std::vector<size_t> len;
  static Segments even(size_t count, int parts);    // Partition of count
  static Segments blocks(size_t block, int parts);  // equal blocks
  size_t max_len() const;
};

// Ring phases use tags (phase << 28) | (step * chunks + chunk).
constexpr uint32_t kRingPhaseReduceScatter = 1;
constexpr uint32_t kRingPhaseAllgather = 2;

void ring_reduce_scatter(const OpContext& ctx, char* buf, const Segments& segs, DType dtype,
                         ReduceOp op, int k);
void ring_allgather(const OpContext& ctx, char* buf, const Segments& segs, size_t elem_size, int k);

// The allgather half as an object, so that its receives can be posted before the
// reduce-scatter half runs (allreduce does): a rank that finishes reduce-scatter first then
// streams its segments straight into their final place at its neighbour, instead of into
// early-arrival buffers that are copied again once the neighbour posts. Safe because every
// receive targets a segment this rank has already sent (or never sends) in reduce-scatter, and
// its data can only exist once that send has been taken: the bytes travel around the ring.
class RingAllgather {
 public:
  RingAllgather(const OpContext& ctx, char* buf, const Segments& segs, size_t elem_size, int k);
  void post_receives();  // idempotent
  void run();            // posts the receives if not yet done, sends, forwards, waits
 private:
  const OpContext& ctx_;
  char* buf_;
  const Segments& segs_;
  size_t es_;
  int k_;
  bool posted_ = false;
  std::vector<Request> rreq_;
};

}  // namespace gw
