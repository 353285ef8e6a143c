#include "gradwire/compress/compressed_collectives.h"

#include <cstring>
#include <vector>

#include "gradwire/collectives/collectives.h"
#include "gradwire/collectives/ring.h"
#include "gradwire/common/error.h"
#include "gradwire/compress/codec_ops.h"
#include "gradwire/reduce/reduce.h"

namespace gw {
namespace {

// Tags (phase << 28) | step; phases 8.. keep clear of the dense collectives' tags, since
// random-k runs a dense allreduce inside the same op.
constexpr uint32_t kPhaseReduceScatter = 8;
constexpr uint32_t kPhaseAllgather = 9;
constexpr uint32_t kPhaseSparseSize = 10;
constexpr uint32_t kPhaseSparsePairs = 11;

uint32_t tag(uint32_t phase, int step) { return (phase << 28) | uint32_t(step); }

// Stochastic rounding draws differ per op, rank and hop; random-k indices (shared) only per op.
uint64_t rounding_seed(const OpContext& ctx, int hop) {
  uint64_t hi = codec::hash_index(ctx.seq, uint64_t(ctx.rank) << 16 | uint32_t(hop));
  return hi << 32 | codec::hash_index(~ctx.seq, uint64_t(ctx.rank) << 16 | uint32_t(hop));
}
uint64_t shared_seed(const OpContext& ctx) {
  return uint64_t(codec::hash_index(ctx.seq, 0x72616e64ull)) << 32 | codec::hash_index(ctx.seq, 1);
}

// Replaces each segment of x by decode(encode(segment)): what the ring will carry.
void roundtrip_segments(const CodecSpec& spec, float* x, const Segments& segs, uint64_t seed) {
  size_t max_bytes = 0;
  for (size_t l : segs.len) max_bytes = std::max(max_bytes, encoded_bytes(spec, l));
  std::vector<uint8_t> tmp(max_bytes);
  for (size_t i = 0; i < segs.len.size(); ++i) {
    float* s = x + segs.offset[i];
    encode(spec, s, segs.len[i], tmp.data(), seed, segs.offset[i]);
    decode(spec, tmp.data(), segs.len[i], s, seed, false);
  }
}

// Applies error feedback to x (length n) in place: afterwards x holds what this rank
// contributes, as produced by `lossy(x)`.
template <typename Lossy>
void with_feedback(const CompressedCall& c, float* x, size_t n, Lossy lossy) {
  if (!c.residuals || !c.spec.error_feedback) {
    lossy(x);
    return;
  }
  c.residuals->compensate(c.key, x, n);
  std::vector<float> compensated(x, x + n);
  lossy(x);
  c.residuals->update(c.key, compensated.data(), x, n);
}

// Ring reduce-scatter over `segs` with decode-add-encode per hop; afterwards rank r holds the
// full sum of segment r (in fp32, not re-encoded).
void quantized_reduce_scatter(const OpContext& ctx, float* buf, const Segments& segs,
                              const CodecSpec& spec) {
  const int n = ctx.size, r = ctx.rank;
  if (n == 1) return;
  size_t max_bytes = 0;
  for (size_t l : segs.len) max_bytes = std::max(max_bytes, encoded_bytes(spec, l));
  std::vector<uint8_t> sbuf(max_bytes), rbuf(max_bytes);
  const int right = ctx.mod(r + 1), left = ctx.mod(r - 1);
  for (int step = 0; step < n - 1; ++step) {
    int sseg = ctx.mod(r - step - 1), rseg = ctx.mod(r - step - 2);
    Request sreq, rreq;
    ctx.recv(left, tag(kPhaseReduceScatter, step), rbuf.data(), encoded_bytes(spec, segs.len[rseg]),
             &rreq);
    size_t sb = encode(spec, buf + segs.offset[sseg], segs.len[sseg], sbuf.data(),
                       rounding_seed(ctx, step + 1), segs.offset[sseg]);
    ctx.send(right, tag(kPhaseReduceScatter, step), sbuf.data(), sb, &sreq);
    ctx.wait(&rreq);
    decode(spec, rbuf.data(), segs.len[rseg], buf + segs.offset[rseg], 0, true);
    ctx.wait(&sreq);
  }
}

// Ring allgather of encoded segments: rank r encodes segment r once; the bytes are forwarded
// unchanged and every rank (the owner too) decodes them into place.
void quantized_allgather(const OpContext& ctx, float* buf, const Segments& segs,
                         const CodecSpec& spec, uint64_t seed) {
  const int n = ctx.size, r = ctx.rank;
  std::vector<size_t> off(n + 1, 0);
  for (int i = 0; i < n; ++i) off[i + 1] = off[i] + encoded_bytes(spec, segs.len[i]);
  std::vector<uint8_t> all(off[n]);
  encode(spec, buf + segs.offset[r], segs.len[r], all.data() + off[r], seed, segs.offset[r]);
  if (n > 1) {
    const int right = ctx.mod(r + 1), left = ctx.mod(r - 1);
    std::vector<Request> sreq(n - 1), rreq(n - 1);
    for (int step = 0; step < n - 1; ++step) {
      int seg = ctx.mod(r - step - 1);
      ctx.recv(left, tag(kPhaseAllgather, step), all.data() + off[seg], off[seg + 1] - off[seg],
               &rreq[step]);
    }
    ctx.send(right, tag(kPhaseAllgather, 0), all.data() + off[r], off[r + 1] - off[r], &sreq[0]);
    for (int step = 0; step < n - 1; ++step) {
      ctx.wait(&rreq[step]);
      if (step + 1 < n - 1) {
        int seg = ctx.mod(r - step - 1);
        ctx.send(right, tag(kPhaseAllgather, step + 1), all.data() + off[seg],
                 off[seg + 1] - off[seg], &sreq[step + 1]);
      }
    }
    ctx.wait_all(sreq);
  }
  for (int i = 0; i < n; ++i)
    decode(spec, all.data() + off[i], segs.len[i], buf + segs.offset[i], seed, false);
}

// Every rank sends its encoded payload (of data-dependent size) to every peer; returns the
// payloads by rank, this rank's included.
std::vector<std::vector<uint8_t>> exchange_payloads(const OpContext& ctx,
                                                    std::vector<uint8_t> mine) {
  const int n = ctx.size, r = ctx.rank;
  std::vector<uint64_t> sizes(n, 0);
  uint64_t my_size = mine.size();
  std::vector<Request> sreq(n), rreq(n);
  for (int p = 0; p < n; ++p) {
    if (p == r) continue;
    ctx.recv(p, tag(kPhaseSparseSize, 0), &sizes[p], 8, &rreq[p]);
    ctx.send(p, tag(kPhaseSparseSize, 0), &my_size, 8, &sreq[p]);
  }
  for (int p = 0; p < n; ++p)
    if (p != r) ctx.wait(&rreq[p]);
  std::vector<std::vector<uint8_t>> all(n);
  std::vector<Request> sreq2(n), rreq2(n);
  for (int p = 0; p < n; ++p) {
    if (p == r) continue;
    all[p].resize(sizes[p]);
    ctx.recv(p, tag(kPhaseSparsePairs, 0), all[p].data(), sizes[p], &rreq2[p]);
    ctx.send(p, tag(kPhaseSparsePairs, 0), mine.data(), mine.size(), &sreq2[p]);
  }
  for (int p = 0; p < n; ++p) {
    if (p == r) continue;
    ctx.wait(&rreq2[p]);
    ctx.wait(&sreq[p]);
    ctx.wait(&sreq2[p]);
  }
  all[r] = std::move(mine);
  return all;
}

void check_sparse_payload(const OpContext& ctx, const std::vector<uint8_t>& p, size_t count,
                          int from) {
  uint64_t nnz = 0;
  GW_CHECK_ARG(p.size() >= 8, "rank ", ctx.rank, ": sparse payload from rank ", from,
               " is too short (", p.size(), " bytes)");
  memcpy(&nnz, p.data(), 8);
  GW_CHECK_ARG(nnz <= count && p.size() == 8 + 8 * nnz, "rank ", ctx.rank,
               ": malformed sparse payload from rank ", from, " (", nnz, " pairs in ", p.size(),
               " bytes for ", count, " elements)");
}

void finish_average(const CompressedCall& c, float* buf, size_t count, int size) {
  if (c.average && size > 1) divide_by(buf, count, DType::kFloat32, size);
}

void check_codec(const CompressedCall& c, const char* op) {
  GW_CHECK_ARG(c.spec.kind != CodecKind::kNone, op, " with codec 'none' is a dense op");
}

}  // namespace

uint64_t dense_allreduce_bytes(size_t count, int size) {
  return size > 1 ? 2 * uint64_t(count) * 4 * uint64_t(size - 1) / uint64_t(size) : 0;
}
uint64_t dense_reduce_scatter_bytes(size_t count, int size) {
  return uint64_t(count) * 4 * uint64_t(size - 1);
}
uint64_t dense_allgather_bytes(size_t count, int size) {
  return uint64_t(count) * 4 * uint64_t(size - 1);
}

void compressed_allreduce(const OpContext& ctx, float* buf, size_t count, const CompressedCall& c) {
  check_codec(c, "compressed allreduce");
  const CodecSpec& spec = c.spec;
  if (spec.quantized()) {
    Segments segs = Segments::even(count, ctx.size);
    with_feedback(c, buf, count,
                  [&](float* x) { roundtrip_segments(spec, x, segs, rounding_seed(ctx, 0)); });
    quantized_reduce_scatter(ctx, buf, segs, spec);
    quantized_allgather(ctx, buf, segs, spec, rounding_seed(ctx, 1 << 15));
  } else if (spec.kind == CodecKind::kRandomk) {
    const uint64_t seed = shared_seed(ctx);
    const size_t k = codec_keep_count(spec, count);
    std::vector<float> values(k);
    with_feedback(c, buf, count, [&](float* x) {
      encode(spec, x, count, values.data(), seed);
      decode(spec, values.data(), count, x, seed, false);
    });
    if (ctx.size > 1) allreduce(ctx, values.data(), k, DType::kFloat32, ReduceOp::kSum);
    decode(spec, values.data(), count, buf, seed, false);
  } else {
    const uint64_t seed = shared_seed(ctx);
    std::vector<uint8_t> mine(encoded_bytes(spec, count));
    with_feedback(c, buf, count, [&](float* x) {
      mine.resize(encode(spec, x, count, mine.data(), seed));
      decode(spec, mine.data(), count, x, seed, false);
    });
    auto all = exchange_payloads(ctx, std::move(mine));
    std::fill(buf, buf + count, 0.0f);
    for (int p = 0; p < ctx.size; ++p) {
      check_sparse_payload(ctx, all[p], count, p);
      decode(spec, all[p].data(), count, buf, seed, true);
    }
  }
  finish_average(c, buf, count, ctx.size);
}

void compressed_reduce_scatter(const OpContext& ctx, const float* in, float* out, size_t count,
                               const CompressedCall& c) {
  check_codec(c, "compressed reduce_scatter");
  const size_t total = count * size_t(ctx.size);
  std::vector<float> work(in, in + total);
  if (c.spec.quantized()) {
    Segments segs = Segments::blocks(count, ctx.size);
    with_feedback(c, work.data(), total,
                  [&](float* x) { roundtrip_segments(c.spec, x, segs, rounding_seed(ctx, 0)); });
    quantized_reduce_scatter(ctx, work.data(), segs, c.spec);
    if (count) memcpy(out, work.data() + size_t(ctx.rank) * count, count * 4);
    finish_average(c, out, count, ctx.size);
  } else {
    // Sparse codecs select over the whole input, so they run the full compressed allreduce and
    // keep this rank's block.
    compressed_allreduce(ctx, work.data(), total, c);
    if (count) memcpy(out, work.data() + size_t(ctx.rank) * count, count * 4);
  }
}

void compressed_allgather(const OpContext& ctx, const float* in, float* out, size_t count,
                          const CompressedCall& c) {
  check_codec(c, "compressed allgather");
  const CodecSpec& spec = c.spec;
  std::vector<float> x(in, in + count);
  const uint64_t seed = spec.quantized() ? rounding_seed(ctx, 0) : shared_seed(ctx);
  std::vector<uint8_t> mine(encoded_bytes(spec, count));
  with_feedback(c, x.data(), count, [&](float* v) {
    mine.resize(encode(spec, v, count, mine.data(), seed));
    decode(spec, mine.data(), count, v, seed, false);
  });
  if (spec.quantized()) {
    // The encoded size is fixed: place this rank's block and run the encoded ring allgather.
    Segments segs = Segments::blocks(count, ctx.size);
    memcpy(out + size_t(ctx.rank) * count, x.data(), count * 4);
    (void)mine;
    quantized_allgather(ctx, out, segs, spec, seed);
    return;
  }
  auto all = exchange_payloads(ctx, std::move(mine));
  for (int p = 0; p < ctx.size; ++p) {
    if (spec.kind != CodecKind::kRandomk) check_sparse_payload(ctx, all[p], count, p);
    GW_CHECK_ARG(spec.kind != CodecKind::kRandomk || all[p].size() == encoded_bytes(spec, count),
                 "rank ", ctx.rank, ": random-k payload from rank ", p, " has ", all[p].size(),
                 " bytes, expected ", encoded_bytes(spec, count));
    decode(spec, all[p].data(), count, out + size_t(p) * count, seed, false);
  }
}

}  // namespace gw
