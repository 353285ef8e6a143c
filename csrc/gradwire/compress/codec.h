// Gradient codecs: what a codec is (CodecSpec, parsed from a spec string such as "int8" or
// "topk:0.01"), how many bytes it puts on the wire for `count` float32 elements, and the
// type-erased CPU driver that encodes and decodes. The element/block math lives in
// codec_ops.h (shared with the CUDA kernels); the wire formats are documented in
// docs/compression.md and docs/wire-protocol.md.
//
// Every codec encodes float32. Quantized codecs encode a segment of n elements on their own:
// blocks of kCodecBlock elements start at the segment's first element.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace gw {

enum class CodecKind : uint8_t {
  kNone = 0,
  kFp16 = 1,
  kBf16 = 2,
  kInt8 = 3,
  kInt4 = 4,
  kSign = 5,
  kQsgd = 6,
  kTopk = 7,
  kRandomk = 8,
  kThreshold = 9,
};

constexpr size_t kCodecBlock = 256;

struct CodecSpec {
  CodecKind kind = CodecKind::kNone;
  bool stochastic = false;  // int8 / int4 rounding (QSGD is always stochastic)
  bool sampled = false;     // top-k: sampled-threshold fast path instead of exact selection
  int levels = 0;           // QSGD levels s (1..127)
  double ratio = 0;         // top-k / random-k: fraction of elements kept, in (0, 1]
  double threshold = 0;     // threshold: keep |x| >= threshold
  bool error_feedback = false;

  // "int8", "int4:stochastic", "qsgd:4", "topk:0.01:sampled", ... (docs/compression.md).
  // Raises InvalidArgument naming the problem.
  static CodecSpec parse(const std::string& spec);
  std::string name() const;  // canonical spec string; parse(name()) == *this
  bool lossy() const { return kind != CodecKind::kNone; }
  // Block-quantized or cast: reduced hop by hop in a ring. The others are sparse.
  bool quantized() const;
  // Sparse codecs whose encoded size depends on the data (threshold, sampled top-k).
  bool variable_size() const;
};

// Kept elements for top-k / random-k over `count` elements: round(ratio * count), at least one
// when count > 0.
size_t codec_keep_count(const CodecSpec& spec, size_t count);

// Encoded bytes of `count` elements. Exact for every codec except the variable-size ones, for
// which it is the largest possible size.
size_t encoded_bytes(const CodecSpec& spec, size_t count);

// Encodes x[0, count) into out (encoded_bytes(spec, count) bytes available); returns the bytes
// written. `seed` drives stochastic rounding and the random-k index set; `index_base` is the
// global index of x[0] (stochastic rounding draws one number per global index).
size_t encode(const CodecSpec& spec, const float* x, size_t count, void* out, uint64_t seed,
              uint64_t index_base = 0);

// Decodes `count` elements (encoded with the same spec and seed). accumulate: out += decoded,
// otherwise out = decoded. Elements a sparse codec did not keep decode to 0.
void decode(const CodecSpec& spec, const void* in, size_t count, float* out, uint64_t seed,
            bool accumulate);

// The random-k index set: element j of the value vector is x[(a * j + b) mod count], with a
// coprime to count so the k indices are distinct; (a, b) come from the seed.
void randomk_affine(uint64_t seed, size_t count, uint64_t* a, uint64_t* b);

}  // namespace gw
