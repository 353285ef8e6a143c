// Device versions of the quantized codecs, built from the same __host__ __device__ math
// (compress/codec_ops.h) as the CPU kernels and writing the same layout (compress/codec.h,
// docs/compression.md): one thread block per codec block of kCodecBlock elements. Stochastic
// rounding draws from the counter-based hash of (seed, global index), so for fp16, bf16, int8
// and int4 a device encode produces the bytes the CPU encode does for the same seed. sign and
// qsgd scales are float sums taken in another order, so they may differ in the last bit.
#include <cuda_runtime.h>

#include <cstdint>

#include "gradwire/common/half.h"
#include "gradwire/compress/codec.h"
#include "gradwire/compress/codec_ops.h"

namespace gw {
namespace cuda {
namespace {

using namespace ::gw::codec;

constexpr int kThreads = int(kCodecBlock);

enum class BlockMode { kMaxAbs, kMeanAbs, kNorm };

// Per-block statistic over the block's elements, combined in shared memory: max |x| (as bits,
// like the CPU kernel), sum |x|, or sum of squares of x / max|x|. Every thread gets the result.
__device__ float block_stat(const float* x, size_t len, BlockMode mode, bool* all_finite) {
  __shared__ uint32_t max_bits;
  __shared__ float sum;
  __shared__ int bad;
  int t = threadIdx.x;
  if (t == 0) {
    max_bits = 0;
    sum = 0;
    bad = 0;
  }
  __syncthreads();
  float v = size_t(t) < len ? x[t] : 0.0f;
  uint32_t b = f32_bits(v) & 0x7fffffffu;
  atomicMax(&max_bits, b);
  if (!finite(v)) atomicExch(&bad, 1);
  __syncthreads();
  float m = f32_from_bits(max_bits);
  if (mode == BlockMode::kMeanAbs) atomicAdd(&sum, fabs32(v));
  if (mode == BlockMode::kNorm) {
    float s = m > 0.0f ? v / m : 0.0f;
    atomicAdd(&sum, s * s);
  }
  __syncthreads();
  *all_finite = bad == 0;
  if (mode == BlockMode::kMaxAbs) return m;
  if (mode == BlockMode::kMeanAbs) return len ? sum / float(len) : 0.0f;
  return m * sqrtf(sum);
}

// int8 / int4 / qsgd codes (one byte per element before nibble packing) and per-block scales.
__global__ void encode_block_kernel(const float* x, size_t n, uint8_t* out, CodecKind kind,
                                    bool stochastic, int levels, uint64_t seed, uint64_t base) {
  const size_t nb = (n + kCodecBlock - 1) / kCodecBlock;
  const size_t b = blockIdx.x, first = b * kCodecBlock;
  const size_t len = n - first < kCodecBlock ? n - first : kCodecBlock;
  float* scales = reinterpret_cast<float*>(out);
  uint8_t* payload = out + nb * 4;
  const int t = threadIdx.x;
  bool ok;
  if (kind == CodecKind::kSign) {
    float s = block_stat(x + first, len, BlockMode::kMeanAbs, &ok);
    if (t == 0) scales[b] = ok ? s : quiet_nan();
    // one thread per output byte of the block
    if (size_t(t) * 8 < len) {
      uint8_t byte = 0;
      for (int j = 0; j < 8 && size_t(t) * 8 + j < len; ++j)
        if (x[first + size_t(t) * 8 + j] < 0.0f) byte |= uint8_t(1u << j);
      payload[first / 8 + t] = byte;
    }
    return;
  }
  const bool qsgd = kind == CodecKind::kQsgd;
  const int32_t qmax = kind == CodecKind::kInt8 ? 127 : kind == CodecKind::kInt4 ? 7 : levels;
  float stat = block_stat(x + first, len, qsgd ? BlockMode::kNorm : BlockMode::kMaxAbs, &ok);
  float step = qsgd ? (ok ? stat / float(levels) : quiet_nan()) : maxabs_scale(stat, ok, qmax);
  if (t == 0) scales[b] = step;
  __shared__ int8_t q[kThreads];
  if (size_t(t) < len) {
    float v = x[first + t];
    size_t gi = base + first + t;
    int32_t c;
    if (qsgd) {
      float inv = ok && stat > 0.0f ? float(levels) / stat : 0.0f;
      c = qsgd_code(v, inv, uniform01(seed, gi), levels);
    } else if (stochastic) {
      c = stochastic_round_clamp(v * inverse_scale(step), uniform01(seed, gi), qmax);
    } else {
      c = round_clamp(v * inverse_scale(step), qmax);
    }
    q[t] = int8_t(c);
  }
  __syncthreads();
  const bool nibbles = kind == CodecKind::kInt4 || (qsgd && qsgd_bits(levels) == 4);
  if (!nibbles) {
    if (size_t(t) < len) payload[first + t] = uint8_t(q[t]);
  } else if (size_t(t) * 2 < len) {
    int32_t hi = size_t(t) * 2 + 1 < len ? q[2 * t + 1] : 0;
    payload[first / 2 + t] = pack_nibbles(q[2 * t], hi);
  }
}

__global__ void decode_block_kernel(const uint8_t* in, size_t n, float* out, CodecKind kind,
                                    int levels, bool accumulate) {
  const size_t nb = (n + kCodecBlock - 1) / kCodecBlock;
  const size_t b = blockIdx.x, first = b * kCodecBlock;
  const size_t i = first + threadIdx.x;
  if (i >= n) return;
  const float step = reinterpret_cast<const float*>(in)[b];
  const uint8_t* payload = in + nb * 4;
  float v;
  if (kind == CodecKind::kSign) {
    v = (payload[i / 8] >> (i % 8)) & 1u ? -step : step;
  } else if (kind == CodecKind::kInt4 || (kind == CodecKind::kQsgd && qsgd_bits(levels) == 4)) {
    v = float(nibble(payload[i / 2], int(i & 1))) * step;
  } else {
    v = float(int8_t(payload[i])) * step;
  }
  out[i] = accumulate ? out[i] + v : v;
}

__global__ void cast_encode_kernel(const float* x, size_t n, uint16_t* out, bool bf16) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x)
    out[i] = bf16 ? f32_to_bf16(x[i]) : f32_to_f16(x[i]);
}

__global__ void cast_decode_kernel(const uint16_t* in, size_t n, float* out, bool bf16,
                                   bool accumulate) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    float v = bf16 ? bf16_to_f32(in[i]) : f16_to_f32(in[i]);
    out[i] = accumulate ? out[i] + v : v;
  }
}

unsigned grid_for(size_t n) {
  size_t blocks = (n + 255) / 256;
  return unsigned(blocks > 4096 ? 4096 : (blocks == 0 ? 1 : blocks));
}

}  // namespace

// Encodes n device floats into `out` (device memory of encoded_bytes(spec, n) bytes) for the
// quantized codecs; returns cudaErrorInvalidValue for the others (sparse codecs run on the host).
cudaError_t encode_device(const CodecSpec& spec, const float* x, size_t n, void* out, uint64_t seed,
                          uint64_t index_base, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const unsigned blocks = unsigned((n + kCodecBlock - 1) / kCodecBlock);
  switch (spec.kind) {
    case CodecKind::kFp16:
    case CodecKind::kBf16:
      cast_encode_kernel<<<grid_for(n), 256, 0, stream>>>(x, n, static_cast<uint16_t*>(out),
                                                          spec.kind == CodecKind::kBf16);
      break;
    case CodecKind::kInt8:
    case CodecKind::kInt4:
    case CodecKind::kSign:
    case CodecKind::kQsgd:
      encode_block_kernel<<<blocks, kThreads, 0, stream>>>(x, n, static_cast<uint8_t*>(out),
                                                           spec.kind, spec.stochastic, spec.levels,
                                                           seed, index_base);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

cudaError_t decode_device(const CodecSpec& spec, const void* in, size_t n, float* out,
                          bool accumulate, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const unsigned blocks = unsigned((n + kCodecBlock - 1) / kCodecBlock);
  switch (spec.kind) {
    case CodecKind::kFp16:
    case CodecKind::kBf16:
      cast_decode_kernel<<<grid_for(n), 256, 0, stream>>>(
          static_cast<const uint16_t*>(in), n, out, spec.kind == CodecKind::kBf16, accumulate);
      break;
    case CodecKind::kInt8:
    case CodecKind::kInt4:
    case CodecKind::kSign:
    case CodecKind::kQsgd:
      decode_block_kernel<<<blocks, kThreads, 0, stream>>>(static_cast<const uint8_t*>(in), n, out,
                                                           spec.kind, spec.levels, accumulate);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace gw
