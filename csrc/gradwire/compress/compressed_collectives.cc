#include "gradwire/compress/compressed_collectives.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "gradwire/collectives/collectives.h"
#include "gradwire/common/error.h"
#include "gradwire/compress/codec_ops.h"
#include "gradwire/compress/flush_subnormals.h"
#include "gradwire/compress/quantized_ring.h"
#include "gradwire/reduce/reduce.h"

namespace gw {
namespace {

constexpr uint32_t kPhaseSparseSize = kCompressedPhaseSparseSize;
constexpr uint32_t kPhaseSparsePairs = kCompressedPhaseSparsePairs;
uint32_t tag(uint32_t phase, int step) { return (phase << 28) | uint32_t(step); }

uint64_t shared_seed(const OpContext& ctx) {
  return uint64_t(codec::hash_index(ctx.seq, 0x72616e64ull)) << 32 | codec::hash_index(ctx.seq, 1);
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
  FlushSubnormals flush;
  const CodecSpec& spec = c.spec;
  if (spec.quantized()) {
    quantized_allreduce(ctx, buf, count, c);
    return;
  }
  if (spec.kind == CodecKind::kRandomk) {
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
  FlushSubnormals flush;
  if (c.spec.quantized()) {
    quantized_reduce_scatter(ctx, in, out, count, c);
    return;
  }
  // Sparse codecs select over the whole input, so they run the full compressed allreduce and
  // keep this rank's block.
  const size_t total = count * size_t(ctx.size);
  std::vector<float> work(in, in + total);
  compressed_allreduce(ctx, work.data(), total, c);
  if (count) memcpy(out, work.data() + size_t(ctx.rank) * count, count * 4);
}

void compressed_allgather(const OpContext& ctx, const float* in, float* out, size_t count,
                          const CompressedCall& c) {
  check_codec(c, "compressed allgather");
  FlushSubnormals flush;
  const CodecSpec& spec = c.spec;
  if (spec.quantized()) {
    quantized_allgather(ctx, in, out, count, c);
    return;
  }
  const uint64_t seed = shared_seed(ctx);
  std::vector<float> x(in, in + count);
  std::vector<uint8_t> payload(encoded_bytes(spec, count));
  with_feedback(c, x.data(), count, [&](float* v) {
    payload.resize(encode(spec, v, count, payload.data(), seed));
    decode(spec, payload.data(), count, v, seed, false);
  });
  auto all = exchange_payloads(ctx, std::move(payload));
  for (int p = 0; p < ctx.size; ++p) {
    if (spec.kind != CodecKind::kRandomk) check_sparse_payload(ctx, all[p], count, p);
    GW_CHECK_ARG(spec.kind != CodecKind::kRandomk || all[p].size() == encoded_bytes(spec, count),
                 "rank ", ctx.rank, ": random-k payload from rank ", p, " has ", all[p].size(),
                 " bytes, expected ", encoded_bytes(spec, count));
    decode(spec, all[p].data(), count, out + size_t(p) * count, seed, false);
  }
}

}  // namespace gw
