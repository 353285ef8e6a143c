#include "gradwire/compress/quantized_ring.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <vector>

#include "gradwire/compress/codec_ops.h"
#include "gradwire/compress/scratch.h"

namespace gw {
namespace {

// Stochastic rounding draws differ per op, rank and hop.
uint64_t rounding_seed(const OpContext& ctx, int hop) {
  uint64_t hi = codec::hash_index(ctx.seq, uint64_t(ctx.rank) << 16 | uint32_t(hop));
  return hi << 32 | codec::hash_index(~ctx.seq, uint64_t(ctx.rank) << 16 | uint32_t(hop));
}
constexpr int kAllgatherHop = 1 << 15;  // the allgather's encoding, after every ring hop

// How segments are cut into chunks: whole codec blocks from each segment's start, about
// GRADWIRE_RING_CHUNK_BYTES of float32 each (a tile that stays in cache), at most kMaxChunks.
struct Chunking {
  static constexpr size_t kMaxChunks = 1024;
  size_t chunks = 1;  // per segment
  size_t elems = 0;   // per full chunk
  size_t slot = 0;    // encoded bytes of a full chunk
  const Segments* segs = nullptr;

  Chunking(const Segments& s, const CodecSpec& spec, size_t chunk_bytes) : segs(&s) {
    const size_t blocks = (s.max_len() + kCodecBlock - 1) / kCodecBlock;
    const size_t target = std::max<size_t>(1, chunk_bytes / (4 * kCodecBlock));
    chunks = std::max<size_t>(1, std::min(kMaxChunks, (blocks + target - 1) / target));
    elems = std::max<size_t>(1, (blocks + chunks - 1) / chunks) * kCodecBlock;
    slot = encoded_bytes(spec, elems);
  }
  // Global offset and length of chunk c of segment seg (length 0 past the segment's end).
  void range(int seg, size_t c, size_t* off, size_t* cnt) const {
    const size_t len = segs->len[seg], first = std::min(len, c * elems);
    *off = segs->offset[seg] + first;
    *cnt = std::min(len - first, elems);
  }
};

// This rank's contribution, encoded chunk by chunk when first needed, with error feedback
// applied on the way: compensated = x + residual, codes = encode(compensated), residual =
// compensated - decode(codes) (non-finite differences reset to 0). x[i] and residual[i] hold
// the element at global index origin + i.
class Contribution {
 public:
  // compensated and decoded: chunk-sized tiles of the caller's.
  Contribution(const CodecSpec& spec, const float* x, float* residual, size_t origin, uint64_t seed,
               float* compensated, float* decoded)
      : spec_(spec),
        x_(x),
        res_(residual),
        origin_(origin),
        seed_(seed),
        compensated_(compensated),
        scratch_(decoded) {}

  // Encodes global elements [off, off + cnt) into codes (returns the bytes); when `decoded` is
  // set it receives decode(codes).
  size_t encode_chunk(size_t off, size_t cnt, uint8_t* codes, float* decoded) {
    const float* src = x_ + (off - origin_);
    if (!res_) {
      size_t bytes = encode(spec_, src, cnt, codes, seed_, off);
      if (decoded) decode(spec_, codes, cnt, decoded, seed_, false);
      return bytes;
    }
    float* rs = res_ + (off - origin_);
    norms_.input_sq += feedback_compensate(src, rs, compensated_, cnt);
    size_t bytes = encode(spec_, compensated_, cnt, codes, seed_, off);
    float* dec = decoded ? decoded : scratch_;
    decode(spec_, codes, cnt, dec, seed_, false);
    norms_.residual_sq += feedback_residual(compensated_, dec, rs, cnt);
    return bytes;
  }
  // decode(encode(x + residual)) of [off, off + cnt) into tile, through a scratch encoding.
  void decoded_chunk(size_t off, size_t cnt, uint8_t* scratch_codes, float* tile) {
    encode_chunk(off, cnt, scratch_codes, tile);
  }
  ResidualStore::Norms norms() const { return norms_; }

 private:
  const CodecSpec& spec_;
  const float* x_;
  float* res_;
  size_t origin_;
  uint64_t seed_;
  float* compensated_;
  float* scratch_;
  ResidualStore::Norms norms_;
};

// Runs fn(residual or nullptr), under the residual store's lock when error feedback is on.
template <typename Fn>
void with_residual(const CompressedCall& c, size_t n, Fn fn) {
  if (!c.residuals || !c.spec.error_feedback) {
    fn(static_cast<float*>(nullptr));
    return;
  }
  c.residuals->with_residual(c.key, n, [&](float* res) { return fn(res); });
}

// Where finished chunks go: out[off - origin, + cnt) = tile / divisor.
void store(float* out, size_t origin, size_t off, size_t cnt, const float* tile, int divisor) {
  float* dst = out + (off - origin);
  if (divisor == 1) {
    std::copy(tile, tile + cnt, dst);
  } else {
    const float d = float(divisor);
    for (size_t j = 0; j < cnt; ++j) dst[j] = tile[j] / d;
  }
}

// The ring over one op's segments. Tags: (phase << 28) | (step * chunks + chunk).
class QuantizedRing {
 public:
  QuantizedRing(const OpContext& ctx, const CodecSpec& spec, const Segments& segs)
      : ctx_(ctx),
        spec_(spec),
        ch_(segs, spec, ctx.config->ring_chunk_bytes),
        n_(ctx.size),
        r_(ctx.rank),
        msgs_(size_t(n_ - 1) * ch_.chunks),
        tiles_(ScratchSlot::kTiles, 4 * ch_.elems * sizeof(float) + ch_.slot) {}

  // Reduce-scatter: afterwards sink(off, cnt, tile) has been called for every chunk of this
  // rank's segment with its full sum. Chunk c of step s travels under tag s * chunks + c; the
  // segment received at step s is the one sent at step s + 1.
  template <typename Sink>
  void reduce_scatter(Contribution& own, Sink sink) {
    size_t off, cnt;
    if (n_ == 1) {
      for (size_t c = 0; c < ch_.chunks; ++c) {
        ch_.range(0, c, &off, &cnt);
        own.decoded_chunk(off, cnt, scratch_codes(), tile());
        sink(off, cnt, tile());
      }
      return;
    }
    rs_send_.reset(new Scratch(ScratchSlot::kRingSend, msgs_ * ch_.slot));
    rs_recv_.reset(new Scratch(ScratchSlot::kRingRecv, msgs_ * ch_.slot));
    rs_sreq_.assign(msgs_, Request());
    std::vector<Request> rreq(msgs_);
    const int right = ctx_.mod(r_ + 1), left = ctx_.mod(r_ - 1);
    auto received = [&](size_t i) { return rs_recv_->data() + i * ch_.slot; };
    for_each_received(2, [&](int, size_t, size_t i, size_t, size_t cnt) {
      ctx_.recv(left, tag(kPhaseRsTag, i), received(i), encoded_bytes(spec_, cnt), &rreq[i]);
    });
    // First hop: this rank's own encoding of segment r - 1, chunk by chunk as it is made.
    const int first = ctx_.mod(r_ - 1);
    for (size_t c = 0; c < ch_.chunks; ++c) {
      ch_.range(first, c, &off, &cnt);
      uint8_t* out = rs_send_->data() + c * ch_.slot;
      size_t bytes = own.encode_chunk(off, cnt, out, nullptr);
      ctx_.send(right, tag(kPhaseRsTag, c), out, bytes, &rs_sreq_[c]);
    }
    for_each_received(2, [&](int step, size_t, size_t i, size_t off, size_t cnt) {
      // This rank's part first: the encoding overlaps with the chunk's transfer.
      own.decoded_chunk(off, cnt, scratch_codes(), tile());
      ctx_.wait(&rreq[i]);
      decode(spec_, received(i), cnt, tile(), 0, true);
      if (step == n_ - 2) {
        sink(off, cnt, tile());
        return;
      }
      const size_t j = i + ch_.chunks;
      uint8_t* out = rs_send_->data() + j * ch_.slot;
      size_t bytes = encode(spec_, tile(), cnt, out, rounding_seed(ctx_, step + 1), off);
      ctx_.send(right, tag(kPhaseRsTag, j), out, bytes, &rs_sreq_[j]);
    });
  }

  // Allgather, in three parts: post_allgather() posts every receive; the caller encodes each
  // chunk c of this rank's segment into ag_slot(rank, c) and hands it to send_own(c, bytes);
  // finish_allgather(decode_into) forwards what arrives and calls decode_into(off, cnt, codes)
  // on each received chunk.
  void post_allgather() {
    ag_.reset(new Scratch(ScratchSlot::kAllgather, size_t(n_) * ch_.chunks * ch_.slot));
    ag_sreq_.assign(msgs_, Request());
    ag_rreq_.assign(msgs_, Request());
    const int left = ctx_.mod(r_ - 1);
    for_each_received(1, [&](int, size_t seg, size_t i, size_t, size_t cnt) {
      ctx_.recv(left, tag(kPhaseAgTag, i), ag_slot(int(seg), i % ch_.chunks),
                encoded_bytes(spec_, cnt), &ag_rreq_[i]);
    });
  }
  uint8_t* ag_slot(int seg, size_t c) const {
    return ag_->data() + (size_t(seg) * ch_.chunks + c) * ch_.slot;
  }
  void send_own(size_t c, size_t bytes) {
    if (n_ == 1) return;
    ctx_.send(ctx_.mod(r_ + 1), tag(kPhaseAgTag, c), ag_slot(r_, c), bytes, &ag_sreq_[c]);
  }
  template <typename Decode>
  void finish_allgather(Decode decode_into) {
    const int right = ctx_.mod(r_ + 1);
    for_each_received(1, [&](int step, size_t seg, size_t i, size_t off, size_t cnt) {
      uint8_t* codes = ag_slot(int(seg), i % ch_.chunks);
      ctx_.wait(&ag_rreq_[i]);
      if (step + 1 < n_ - 1) {
        const size_t j = i + ch_.chunks;
        ctx_.send(right, tag(kPhaseAgTag, j), codes, encoded_bytes(spec_, cnt), &ag_sreq_[j]);
      }
      decode_into(off, cnt, codes);
    });
  }
  void wait_sends() {
    ctx_.wait_all(rs_sreq_);
    ctx_.wait_all(ag_sreq_);
  }

  const Chunking& chunking() const { return ch_; }
  // Four chunk-sized float tiles: 0 the ring's partial sum, 1-3 for the caller and its
  // Contribution.
  float* tile(int i = 0) const { return tiles_.as<float>() + size_t(i) * ch_.elems; }

 private:
  static constexpr uint32_t kPhaseRsTag = kCompressedPhaseReduceScatter;
  static constexpr uint32_t kPhaseAgTag = kCompressedPhaseAllgather;
  static uint32_t tag(uint32_t phase, size_t index) { return (phase << 28) | uint32_t(index); }

  // fn(step, seg, i, off, cnt) for every chunk this rank receives, in order: at step s it
  // receives segment r - s - shift (shift 2 in the reduce-scatter, 1 in the allgather); i =
  // s * chunks + chunk, the message's index; [off, off + cnt) its global elements.
  template <typename Fn>
  void for_each_received(int shift, Fn fn) const {
    size_t off, cnt;
    for (int step = 0; step < n_ - 1; ++step) {
      const int seg = ctx_.mod(r_ - step - shift);
      for (size_t c = 0; c < ch_.chunks; ++c) {
        ch_.range(seg, c, &off, &cnt);
        fn(step, size_t(seg), size_t(step) * ch_.chunks + c, off, cnt);
      }
    }
  }

  const OpContext& ctx_;
  const CodecSpec& spec_;
  Chunking ch_;
  const int n_, r_;
  const size_t msgs_;
  Scratch tiles_;
  std::unique_ptr<Scratch> rs_send_, rs_recv_, ag_;
  uint8_t* scratch_codes() const { return tiles_.data() + 4 * ch_.elems * sizeof(float); }
  std::vector<Request> rs_sreq_, ag_sreq_, ag_rreq_;
};

}  // namespace

void quantized_allreduce(const OpContext& ctx, float* buf, size_t count, const CompressedCall& c) {
  const Segments segs = Segments::even(count, ctx.size);
  const int divisor = c.average ? ctx.size : 1;
  const uint64_t ag_seed = rounding_seed(ctx, kAllgatherHop);
  QuantizedRing ring(ctx, c.spec, segs);
  const Chunking& ch = ring.chunking();
  with_residual(c, count, [&](float* res) {
    Contribution own(c.spec, buf, res, 0, rounding_seed(ctx, 0), ring.tile(1), ring.tile(2));
    ring.post_allgather();
    size_t next = 0;  // chunks of this rank's segment finish in order
    float* decoded = ring.tile(3);
    ring.reduce_scatter(own, [&](size_t off, size_t cnt, const float* sum) {
      uint8_t* codes = ring.ag_slot(ctx.rank, next);
      size_t bytes = encode(c.spec, sum, cnt, codes, ag_seed, off);
      ring.send_own(next++, bytes);
      decode(c.spec, codes, cnt, decoded, ag_seed, false);
      store(buf, 0, off, cnt, decoded, divisor);
    });
    ring.finish_allgather([&](size_t off, size_t cnt, const uint8_t* codes) {
      if (divisor == 1) {
        decode(c.spec, codes, cnt, buf + off, ag_seed, false);
      } else {
        decode(c.spec, codes, cnt, decoded, ag_seed, false);
        store(buf, 0, off, cnt, decoded, divisor);
      }
    });
    ring.wait_sends();
    return own.norms();
  });
}

void quantized_reduce_scatter(const OpContext& ctx, const float* in, float* out, size_t count,
                              const CompressedCall& c) {
  const size_t total = count * size_t(ctx.size);
  const Segments segs = Segments::blocks(count, ctx.size);
  const int divisor = c.average ? ctx.size : 1;
  const size_t mine = segs.offset[ctx.rank];
  QuantizedRing ring(ctx, c.spec, segs);
  with_residual(c, total, [&](float* res) {
    Contribution own(c.spec, in, res, 0, rounding_seed(ctx, 0), ring.tile(1), ring.tile(2));
    ring.reduce_scatter(own, [&](size_t off, size_t cnt, const float* sum) {
      store(out, mine, off, cnt, sum, divisor);
    });
    ring.wait_sends();
    return own.norms();
  });
}

void quantized_allgather(const OpContext& ctx, const float* in, float* out, size_t count,
                         const CompressedCall& c) {
  const Segments segs = Segments::blocks(count, ctx.size);
  const uint64_t seed = rounding_seed(ctx, 0);
  QuantizedRing ring(ctx, c.spec, segs);
  const Chunking& ch = ring.chunking();
  with_residual(c, count, [&](float* res) {
    Contribution own(c.spec, in, res, segs.offset[ctx.rank], seed, ring.tile(1), ring.tile(2));
    ring.post_allgather();
    size_t off, cnt;
    for (size_t k = 0; k < ch.chunks; ++k) {
      ch.range(ctx.rank, k, &off, &cnt);
      size_t bytes = own.encode_chunk(off, cnt, ring.ag_slot(ctx.rank, k), ring.tile());
      ring.send_own(k, bytes);
      store(out, 0, off, cnt, ring.tile(), 1);
    }
    ring.finish_allgather([&](size_t o, size_t n, const uint8_t* codes) {
      decode(c.spec, codes, n, out + o, seed, false);
    });
    ring.wait_sends();
    return own.norms();
  });
}

}  // namespace gw
