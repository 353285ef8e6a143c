#include "gradwire/compress/compressed_collectives.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
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
// A byte buffer left uninitialized: encode() or a receive fills it (zero-filling megabytes first
// would cost as much as the encoding).
class RawBytes {
 public:
  explicit RawBytes(size_t n) : p_(new uint8_t[n]) {}
  uint8_t* data() const { return p_.get(); }

 private:
  std::unique_ptr<uint8_t[]> p_;
};

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

// Error feedback fused with roundtrip_segments, one cache-sized tile at a time: per tile,
// x += residual, then x = decode(encode(x)), residual = compensated - x. The same values as
// with_feedback around roundtrip_segments (tiles start at whole codec blocks from their
// segment's start, and stochastic rounding is indexed globally), with four passes over memory
// instead of about ten and no full-size temporary.
void roundtrip_with_feedback(const CompressedCall& c, float* x, size_t count, const Segments& segs,
                             uint64_t seed) {
  const CodecSpec& spec = c.spec;
  if (!c.residuals || !spec.error_feedback) {
    roundtrip_segments(spec, x, segs, seed);
    return;
  }
  constexpr size_t kTile = 64 * kCodecBlock;  // 64 KiB of float32
  c.residuals->with_residual(c.key, count, [&](float* res) {
    std::vector<float> compensated(kTile);
    std::vector<uint8_t> enc(encoded_bytes(spec, kTile));
    ResidualStore::Norms norms;
    for (size_t i = 0; i < segs.len.size(); ++i) {
      for (size_t t = 0; t < segs.len[i]; t += kTile) {
        const size_t off = segs.offset[i] + t, n = std::min(kTile, segs.len[i] - t);
        float* xs = x + off;
        float* rs = res + off;
        norms.input_sq += sum_of_squares(xs, n);
        for (size_t j = 0; j < n; ++j) compensated[j] = xs[j] += rs[j];
        encode(spec, xs, n, enc.data(), seed, off);
        decode(spec, enc.data(), n, xs, seed, false);
        for (size_t j = 0; j < n; ++j) {
          float d = compensated[j] - xs[j];
          rs[j] = std::isfinite(d) ? d : 0.0f;
        }
        norms.residual_sq += sum_of_squares(rs, n);
      }
    }
    return norms;
  });
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
// full sum of segment r (in fp32, not re-encoded). Pipelined like the dense ring: each segment
// moves in chunks of whole codec blocks (about GRADWIRE_RING_CHUNK_BYTES of float32, at most
// kMaxChunks), and a chunk is re-encoded and forwarded as soon as it has been received and
// added, while later chunks are still in flight. Chunk c of step s uses tag s * chunks + c.
void quantized_reduce_scatter(const OpContext& ctx, float* buf, const Segments& segs,
                              const CodecSpec& spec) {
  constexpr size_t kMaxChunks = 64;
  const int n = ctx.size, r = ctx.rank;
  if (n == 1) return;
  const size_t max_len = segs.max_len();
  const size_t blocks = (max_len + kCodecBlock - 1) / kCodecBlock;
  const size_t target_blocks =
      std::max<size_t>(1, ctx.config->ring_chunk_bytes / (4 * kCodecBlock));
  const size_t chunks =
      std::max<size_t>(1, std::min(kMaxChunks, (blocks + target_blocks - 1) / target_blocks));
  const size_t chunk_elems = std::max<size_t>(1, (blocks + chunks - 1) / chunks) * kCodecBlock;
  const size_t slot = encoded_bytes(spec, chunk_elems);
  auto range = [&](int seg, size_t c, size_t* first, size_t* cnt) {
    size_t len = segs.len[seg];
    *first = std::min(len, c * chunk_elems);
    *cnt = std::min(len - *first, chunk_elems);
  };
  const size_t msgs = size_t(n - 1) * chunks;
  RawBytes sbuf(msgs * slot), rbuf(msgs * slot);
  std::vector<Request> sreq(msgs), rreq(msgs);
  const int right = ctx.mod(r + 1), left = ctx.mod(r - 1);
  auto tag_of = [&](int step, size_t c) {
    return tag(kPhaseReduceScatter, int(size_t(step) * chunks + c));
  };
  auto send_chunk = [&](int step, size_t c) {
    int seg = ctx.mod(r - step - 1);
    size_t first, cnt, i = size_t(step) * chunks + c;
    range(seg, c, &first, &cnt);
    size_t off = segs.offset[seg] + first;
    size_t bytes =
        encode(spec, buf + off, cnt, sbuf.data() + i * slot, rounding_seed(ctx, step + 1), off);
    ctx.send(right, tag_of(step, c), sbuf.data() + i * slot, bytes, &sreq[i]);
  };
  for (int step = 0; step < n - 1; ++step) {
    int seg = ctx.mod(r - step - 2);
    for (size_t c = 0; c < chunks; ++c) {
      size_t first, cnt, i = size_t(step) * chunks + c;
      range(seg, c, &first, &cnt);
      ctx.recv(left, tag_of(step, c), rbuf.data() + i * slot, encoded_bytes(spec, cnt), &rreq[i]);
    }
  }
  for (size_t c = 0; c < chunks; ++c) send_chunk(0, c);
  for (int step = 0; step < n - 1; ++step) {
    int seg = ctx.mod(r - step - 2);
    for (size_t c = 0; c < chunks; ++c) {
      size_t first, cnt, i = size_t(step) * chunks + c;
      range(seg, c, &first, &cnt);
      ctx.wait(&rreq[i]);
      decode(spec, rbuf.data() + i * slot, cnt, buf + segs.offset[seg] + first, 0, true);
      // The segment received at this step is the one sent at the next.
      if (step + 1 < n - 1) send_chunk(step + 1, c);
    }
  }
  ctx.wait_all(sreq);
}

// Ring allgather of encoded segments: rank r encodes segment r once; the bytes are forwarded
// unchanged and every rank (the owner too) decodes them into place.
void quantized_allgather(const OpContext& ctx, float* buf, const Segments& segs,
                         const CodecSpec& spec, uint64_t seed) {
  const int n = ctx.size, r = ctx.rank;
  std::vector<size_t> off(n + 1, 0);
  for (int i = 0; i < n; ++i) off[i + 1] = off[i] + encoded_bytes(spec, segs.len[i]);
  RawBytes all(off[n]);
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
    roundtrip_with_feedback(c, buf, count, segs, rounding_seed(ctx, 0));
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
    roundtrip_with_feedback(c, work.data(), total, segs, rounding_seed(ctx, 0));
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
  if (spec.quantized()) {
    // Fixed encoded size: this rank's block goes through the encoded ring allgather, whose
    // encoding of the own block (same seed, same element indices) is the one fed back here.
    const uint64_t seed = rounding_seed(ctx, 0);
    Segments segs = Segments::blocks(count, ctx.size);
    float* own = out + size_t(ctx.rank) * count;
    if (count) memcpy(own, in, count * 4);
    with_feedback(c, own, count, [&](float* v) {
      std::vector<uint8_t> tmp(encoded_bytes(spec, count));
      encode(spec, v, count, tmp.data(), seed, segs.offset[ctx.rank]);
      decode(spec, tmp.data(), count, v, seed, false);
    });
    quantized_allgather(ctx, out, segs, spec, seed);
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
