#include "gradwire/collectives/ring.h"

#include <algorithm>

#include "gradwire/common/error.h"

namespace gw {
namespace {

constexpr size_t kMaxChunks = 64;

// Chunk geometry shared by both ring halves: every segment is cut into `chunks` pieces of
// `chunk_elems` (the last pieces may be shorter or empty).
struct Chunking {
  size_t chunk_elems;
  size_t chunks;
  Chunking(const OpContext& ctx, const Segments& segs, size_t elem_size) {
    size_t max_len = segs.max_len();
    size_t target = std::max<size_t>(1, ctx.config->ring_chunk_bytes / elem_size);
    chunks = std::max<size_t>(1, std::min(kMaxChunks, (max_len + target - 1) / target));
    chunk_elems = std::max<size_t>(1, (max_len + chunks - 1) / chunks);
  }
  // Element range [first, first + n) of chunk c within a segment of length len.
  void range(size_t len, size_t c, size_t* first, size_t* n) const {
    *first = std::min(len, c * chunk_elems);
    *n = std::min(len - *first, chunk_elems);
  }
  uint32_t tag(uint32_t phase, int step, size_t c) const {
    return (phase << 28) | uint32_t(size_t(step) * chunks + c);
  }
};

}  // namespace

Segments Segments::even(size_t count, int parts) {
  Partition p{count, parts};
  Segments s;
  for (int i = 0; i < parts; ++i) {
    s.offset.push_back(p.offset(i));
    s.len.push_back(p.len(i));
  }
  return s;
}

Segments Segments::blocks(size_t block, int parts) {
  Segments s;
  for (int i = 0; i < parts; ++i) {
    s.offset.push_back(size_t(i) * block);
    s.len.push_back(block);
  }
  return s;
}

size_t Segments::max_len() const {
  size_t m = 0;
  for (size_t l : len) m = std::max(m, l);
  return m;
}

void ring_reduce_scatter(const OpContext& ctx, char* buf, const Segments& segs, DType dtype,
                         ReduceOp op, int k) {
  const int n = ctx.size, r = ctx.rank;
  if (n == 1) return;
  const size_t es = dtype_size(dtype);
  const Chunking ch(ctx, segs, es);
  const int right = ctx.mod(r + 1), left = ctx.mod(r - 1);
  std::vector<Request> sreq(size_t(n - 1) * ch.chunks), rreq(size_t(n - 1) * ch.chunks);

  auto send_chunk = [&](int step, size_t c) {
    int seg = ctx.mod(r + k - 1 - step);
    size_t first, cnt;
    ch.range(segs.len[seg], c, &first, &cnt);
    ctx.send(right, ch.tag(kRingPhaseReduceScatter, step, c), buf + (segs.offset[seg] + first) * es,
             cnt * es, &sreq[size_t(step) * ch.chunks + c]);
  };
  // Received chunks reduce straight into their segment as they arrive. Step s + 1 is posted
  // while step s completes; its segment is only sent at step s + 2, so nothing in flight reads it.
  auto post_recv = [&](int step) {
    int seg = ctx.mod(r + k - 2 - step);
    for (size_t c = 0; c < ch.chunks; ++c) {
      size_t first, cnt;
      ch.range(segs.len[seg], c, &first, &cnt);
      ctx.recv_reduce(left, ch.tag(kRingPhaseReduceScatter, step, c),
                      buf + (segs.offset[seg] + first) * es, cnt * es, dtype, op,
                      &rreq[size_t(step) * ch.chunks + c]);
    }
  };

  post_recv(0);
  for (size_t c = 0; c < ch.chunks; ++c) send_chunk(0, c);
  for (int step = 0; step < n - 1; ++step) {
    if (step + 1 < n - 1) post_recv(step + 1);
    for (size_t c = 0; c < ch.chunks; ++c) {
      ctx.wait(&rreq[size_t(step) * ch.chunks + c]);
      // Forward the freshly reduced chunk as the next step's send.
      if (step + 1 < n - 1) send_chunk(step + 1, c);
    }
  }
  ctx.wait_all(sreq);
}

RingAllgather::RingAllgather(const OpContext& ctx, char* buf, const Segments& segs, size_t es,
                             int k)
    : ctx_(ctx), buf_(buf), segs_(segs), es_(es), k_(k) {}

// Every receive lands in its final place, and the segments are disjoint: post them all at once.
void RingAllgather::post_receives() {
  const int n = ctx_.size, r = ctx_.rank;
  if (n == 1 || posted_) return;
  posted_ = true;
  const Chunking ch(ctx_, segs_, es_);
  const int left = ctx_.mod(r - 1);
  rreq_.assign(size_t(n - 1) * ch.chunks, Request{});
  for (int step = 0; step < n - 1; ++step) {
    int seg = ctx_.mod(r + k_ - step - 1);
    for (size_t c = 0; c < ch.chunks; ++c) {
      size_t first, cnt;
      ch.range(segs_.len[seg], c, &first, &cnt);
      ctx_.recv(left, ch.tag(kRingPhaseAllgather, step, c),
                buf_ + (segs_.offset[seg] + first) * es_, cnt * es_,
                &rreq_[size_t(step) * ch.chunks + c]);
    }
  }
}

void RingAllgather::run() {
  const int n = ctx_.size, r = ctx_.rank;
  if (n == 1) return;
  post_receives();
  const Chunking ch(ctx_, segs_, es_);
  const int right = ctx_.mod(r + 1);
  const size_t es = es_;
  std::vector<Request> sreq(size_t(n - 1) * ch.chunks);
  int own = ctx_.mod(r + k_);
  for (size_t c = 0; c < ch.chunks; ++c) {
    size_t first, cnt;
    ch.range(segs_.len[own], c, &first, &cnt);
    ctx_.send(right, ch.tag(kRingPhaseAllgather, 0, c), buf_ + (segs_.offset[own] + first) * es,
              cnt * es, &sreq[c]);
  }
  for (int step = 0; step < n - 1; ++step) {
    int seg = ctx_.mod(r + k_ - step - 1);
    for (size_t c = 0; c < ch.chunks; ++c) {
      ctx_.wait(&rreq_[size_t(step) * ch.chunks + c]);
      if (step + 1 < n - 1) {
        size_t first, cnt;
        ch.range(segs_.len[seg], c, &first, &cnt);
        ctx_.send(right, ch.tag(kRingPhaseAllgather, step + 1, c),
                  buf_ + (segs_.offset[seg] + first) * es, cnt * es,
                  &sreq[size_t(step + 1) * ch.chunks + c]);
      }
    }
  }
  ctx_.wait_all(sreq);
}

void ring_allgather(const OpContext& ctx, char* buf, const Segments& segs, size_t es, int k) {
  RingAllgather(ctx, buf, segs, es, k).run();
}

}  // namespace gw
