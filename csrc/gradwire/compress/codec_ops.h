// Element and block math of the codecs, written once for host and device (GW_HD): the CPU
// kernels (quantize_kernels.inc) and the CUDA kernels (cuda/codec_kernels.cu) both call these,
// so CPU tests cover the device logic and both produce the same bytes.
//
// Non-finite input: a block that holds NaN or +-inf gets a NaN scale, so every element of that
// block decodes to NaN (the reduction is poisoned, as a dense sum would be). fp16/bf16 casts keep
// inf/NaN element-wise.
#pragma once

#include <cstdint>

#include "gradwire/common/half.h"

namespace gw {
namespace codec {

// Counter-based random numbers: a stateless hash of (seed, index), so any thread on any device
// draws the same number for the same element.
GW_HD uint32_t mix32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352du;
  x ^= x >> 15;
  x *= 0x846ca68bu;
  x ^= x >> 16;
  return x;
}
GW_HD uint32_t hash_index(uint64_t seed, uint64_t index) {
  uint32_t h = mix32(uint32_t(seed) ^ 0x9e3779b9u);
  h = mix32(h ^ uint32_t(seed >> 32));
  h = mix32(h ^ uint32_t(index));
  return mix32(h ^ uint32_t(index >> 32) * 0x85ebca6bu);
}
// Uniform in [0, 1): the top 24 bits, exactly representable in float.
GW_HD float uniform01(uint64_t seed, uint64_t index) {
  return float(hash_index(seed, index) >> 8) * (1.0f / 16777216.0f);
}

GW_HD bool finite(float x) { return (f32_bits(x) & 0x7f800000u) != 0x7f800000u; }
GW_HD float fabs32(float x) { return f32_from_bits(f32_bits(x) & 0x7fffffffu); }
GW_HD float quiet_nan() { return f32_from_bits(0x7fc00000u); }

// Round half away from zero, then clamp to [-qmax, qmax]. Branch-free so loops vectorize.
GW_HD int32_t round_clamp(float t, int32_t qmax) {
  float r = t + (t >= 0.0f ? 0.5f : -0.5f);
  float lim = float(qmax);
  r = r > lim ? lim : r;
  r = r < -lim ? -lim : r;
  return int32_t(r);
}
// floor(t + u) with u uniform in [0, 1): unbiased in expectation; then clamped.
GW_HD int32_t stochastic_round_clamp(float t, float u, int32_t qmax) {
  float v = t + u;
  float lim = float(qmax);
  v = v > lim ? lim : v;
  v = v < -lim ? -lim : v;
  int32_t i = int32_t(v);  // toward zero
  return i - (float(i) > v ? 1 : 0);
}

// Scale of a max-abs block quantizer with levels [-qmax, qmax]: max|x| / qmax, NaN when the
// block holds a non-finite value, and 0 for an all-zero block (which then decodes to zeros).
GW_HD float maxabs_scale(float max_abs, bool all_finite, int32_t qmax) {
  return all_finite ? max_abs / float(qmax) : quiet_nan();
}
GW_HD float inverse_scale(float scale) { return scale > 0.0f ? 1.0f / scale : 0.0f; }

// 4-bit two's-complement codes, two per byte, element 2i in the low nibble.
GW_HD uint8_t pack_nibbles(int32_t lo, int32_t hi) {
  return uint8_t((uint32_t(lo) & 0xfu) | ((uint32_t(hi) & 0xfu) << 4));
}
GW_HD int32_t nibble(uint8_t byte, int which) {
  int32_t v = which ? (byte >> 4) : (byte & 0xf);
  return v >= 8 ? v - 16 : v;
}

// QSGD (Alistarh et al.): level = floor(|x| / norm * s + u), sent with x's sign; decodes to
// sign * level * norm / s. Unbiased; |error| < norm / s.
GW_HD int32_t qsgd_code(float x, float inv_norm_s, float u, int32_t s) {
  float t = fabs32(x) * inv_norm_s;
  int32_t level = stochastic_round_clamp(t, u, s);
  return x < 0.0f ? -level : level;
}

// Bits used per QSGD code: 4 when s <= 7 (packed like int4), else 8.
GW_HD int qsgd_bits(int32_t s) { return s <= 7 ? 4 : 8; }

}  // namespace codec
}  // namespace gw
