// Codec specs, encoded sizes, and the CPU driver: quantized codecs dispatch to the kernel build
// of quantize_kernels.inc chosen for this CPU; sparse codecs (top-k, random-k, threshold) live
// here.
//
// Sparse encoding of n elements (top-k, threshold):
//   uint64 nnz | uint32 index[nnz] (ascending) | float32 value[nnz]
// Random-k sends only float32 value[k]: the indices follow from the seed (randomk_affine).
#include "gradwire/compress/codec.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <vector>

#include "gradwire/common/error.h"
#include "gradwire/compress/codec_ops.h"
#include "gradwire/reduce/reduce.h"

namespace gw {
namespace generic {
size_t quantized_encode(const CodecSpec& spec, const float* x, size_t n, void* out, uint64_t seed,
                        uint64_t base);
void quantized_decode(const CodecSpec& spec, const void* in, size_t n, float* out, bool accumulate);
}  // namespace generic
namespace avx2 {
size_t quantized_encode(const CodecSpec& spec, const float* x, size_t n, void* out, uint64_t seed,
                        uint64_t base);
void quantized_decode(const CodecSpec& spec, const void* in, size_t n, float* out, bool accumulate);
}  // namespace avx2

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t p = s.find(sep, start);
    parts.push_back(s.substr(start, p == std::string::npos ? std::string::npos : p - start));
    if (p == std::string::npos) return parts;
    start = p + 1;
  }
}

double parse_number(const std::string& spec, const std::string& text, const char* what) {
  char* end = nullptr;
  double v = std::strtod(text.c_str(), &end);
  GW_CHECK_ARG(!text.empty() && end && *end == '\0' && std::isfinite(v), "codec spec '", spec,
               "': ", what, " must be a finite number, got '", text, "'");
  return v;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%g", v);
  return buf;
}

const char* const kSpecHelp =
    "expected one of none, fp16, bf16, int8[:stochastic], int4[:stochastic], sign, "
    "qsgd:<levels>, topk:<ratio>[:sampled], randomk:<ratio>, threshold:<value>, optionally "
    "followed by :noef to turn error feedback off";

float magnitude(float x) { return std::isnan(x) ? INFINITY : std::fabs(x); }

bool use_avx2() {
  static const bool v = std::string(simd_level()) == "avx2";
  return v;
}

// Sparse pairs of the kept elements, indices ascending.
size_t write_sparse(const float* x, const std::vector<uint32_t>& idx, void* out) {
  uint8_t* o = static_cast<uint8_t*>(out);
  uint64_t nnz = idx.size();
  memcpy(o, &nnz, 8);
  uint32_t* oi = reinterpret_cast<uint32_t*>(o + 8);
  float* ov = reinterpret_cast<float*>(o + 8 + 4 * nnz);
  for (size_t j = 0; j < nnz; ++j) {
    oi[j] = idx[j];
    memcpy(ov + j, x + idx[j], 4);
  }
  return 8 + 8 * nnz;
}

std::vector<uint32_t> select_topk_exact(const float* x, size_t n, size_t k) {
  std::vector<uint32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0u);
  if (k < n) {
    std::nth_element(idx.begin(), idx.begin() + k, idx.end(),
                     [x](uint32_t a, uint32_t b) { return magnitude(x[a]) > magnitude(x[b]); });
    idx.resize(k);
  }
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<uint32_t> select_above(const float* x, size_t n, float t) {
  std::vector<uint32_t> idx;
  for (size_t i = 0; i < n; ++i)
    if (magnitude(x[i]) >= t) idx.push_back(uint32_t(i));
  return idx;
}

// Sampled top-k: estimate the k-th largest magnitude from a hashed sample of the elements and
// keep everything at or above it. Roughly k elements, not exactly k.
std::vector<uint32_t> select_topk_sampled(const float* x, size_t n, double ratio, uint64_t seed) {
  size_t samples = size_t(std::max(4096.0, 64.0 / ratio));
  if (samples * 2 >= n) return select_topk_exact(x, n, std::max<size_t>(1, size_t(ratio * n)));
  std::vector<float> mags(samples);
  for (size_t j = 0; j < samples; ++j)
    mags[j] = magnitude(x[codec::hash_index(seed ^ 0x5a5a5a5au, j) % n]);
  size_t ks = std::max<size_t>(1, size_t(std::llround(ratio * double(samples))));
  std::nth_element(mags.begin(), mags.begin() + (ks - 1), mags.end(), std::greater<float>());
  return select_above(x, n, mags[ks - 1]);
}

uint64_t gcd(uint64_t a, uint64_t b) {
  while (b) {
    uint64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

}  // namespace

CodecSpec CodecSpec::parse(const std::string& spec) {
  std::vector<std::string> p = split(spec, ':');
  CodecSpec c;
  if (p.size() > 1 && p.back() == "noef") {
    p.pop_back();
    GW_CHECK_ARG(p[0] != "none", "codec spec '", spec,
                 "': 'none' has no error feedback to turn off");
    c.error_feedback = false;
  } else {
    c.error_feedback = true;
  }
  const std::string& head = p[0];
  auto arity = [&](size_t lo, size_t hi) {
    GW_CHECK_ARG(p.size() >= lo && p.size() <= hi, "codec spec '", spec, "': '", head, "' takes ",
                 lo - 1 == hi - 1 ? std::to_string(lo - 1) : str(lo - 1, " or ", hi - 1),
                 " argument(s); ", kSpecHelp);
  };
  if (head == "none") {
    arity(1, 1);
    c.error_feedback = false;
  } else if (head == "fp16" || head == "bf16" || head == "sign") {
    arity(1, 1);
    c.kind = head == "fp16"   ? CodecKind::kFp16
             : head == "bf16" ? CodecKind::kBf16
                              : CodecKind::kSign;
  } else if (head == "int8" || head == "int4") {
    arity(1, 2);
    c.kind = head == "int8" ? CodecKind::kInt8 : CodecKind::kInt4;
    if (p.size() == 2) {
      GW_CHECK_ARG(p[1] == "stochastic", "codec spec '", spec, "': unknown rounding '", p[1],
                   "' (the only option is 'stochastic')");
      c.stochastic = true;
    }
  } else if (head == "qsgd") {
    arity(2, 2);
    double s = parse_number(spec, p[1], "the number of QSGD levels");
    GW_CHECK_ARG(s >= 1 && s <= 127 && s == std::floor(s), "codec spec '", spec,
                 "': QSGD levels must be an integer in [1, 127], got ", p[1]);
    c.kind = CodecKind::kQsgd;
    c.levels = int(s);
  } else if (head == "topk" || head == "randomk") {
    arity(2, head == "topk" ? 3 : 2);
    c.kind = head == "topk" ? CodecKind::kTopk : CodecKind::kRandomk;
    c.ratio = parse_number(spec, p[1], "the kept ratio");
    GW_CHECK_ARG(c.ratio > 0 && c.ratio <= 1, "codec spec '", spec,
                 "': the kept ratio must be in (0, 1], got ", p[1]);
    if (p.size() == 3) {
      GW_CHECK_ARG(p[2] == "sampled", "codec spec '", spec, "': unknown top-k option '", p[2],
                   "' (the only option is 'sampled')");
      c.sampled = true;
    }
  } else if (head == "threshold") {
    arity(2, 2);
    c.kind = CodecKind::kThreshold;
    c.threshold = parse_number(spec, p[1], "the threshold");
    GW_CHECK_ARG(c.threshold >= 0, "codec spec '", spec, "': the threshold must be >= 0, got ",
                 p[1]);
  } else {
    GW_THROW(InvalidArgument, "unknown codec spec '", spec, "'; ", kSpecHelp);
  }
  return c;
}

std::string CodecSpec::name() const {
  std::string s;
  switch (kind) {
    case CodecKind::kNone:
      return "none";
    case CodecKind::kFp16:
      s = "fp16";
      break;
    case CodecKind::kBf16:
      s = "bf16";
      break;
    case CodecKind::kInt8:
      s = stochastic ? "int8:stochastic" : "int8";
      break;
    case CodecKind::kInt4:
      s = stochastic ? "int4:stochastic" : "int4";
      break;
    case CodecKind::kSign:
      s = "sign";
      break;
    case CodecKind::kQsgd:
      s = str("qsgd:", levels);
      break;
    case CodecKind::kTopk:
      s = str("topk:", fmt(ratio), sampled ? ":sampled" : "");
      break;
    case CodecKind::kRandomk:
      s = str("randomk:", fmt(ratio));
      break;
    case CodecKind::kThreshold:
      s = str("threshold:", fmt(threshold));
      break;
  }
  return error_feedback ? s : s + ":noef";
}

bool CodecSpec::quantized() const {
  switch (kind) {
    case CodecKind::kFp16:
    case CodecKind::kBf16:
    case CodecKind::kInt8:
    case CodecKind::kInt4:
    case CodecKind::kSign:
    case CodecKind::kQsgd:
      return true;
    default:
      return false;
  }
}

bool CodecSpec::variable_size() const {
  return kind == CodecKind::kThreshold || (kind == CodecKind::kTopk && sampled);
}

size_t codec_keep_count(const CodecSpec& spec, size_t count) {
  if (count == 0) return 0;
  size_t k = size_t(std::llround(spec.ratio * double(count)));
  return std::min(count, std::max<size_t>(1, k));
}

size_t encoded_bytes(const CodecSpec& spec, size_t n) {
  size_t nb = (n + kCodecBlock - 1) / kCodecBlock;
  switch (spec.kind) {
    case CodecKind::kNone:
      return 4 * n;
    case CodecKind::kFp16:
    case CodecKind::kBf16:
      return 2 * n;
    case CodecKind::kInt8:
      return 4 * nb + n;
    case CodecKind::kInt4:
      return 4 * nb + (n + 1) / 2;
    case CodecKind::kSign:
      return 4 * nb + (n + 7) / 8;
    case CodecKind::kQsgd:
      return 4 * nb + (codec::qsgd_bits(spec.levels) == 4 ? (n + 1) / 2 : n);
    case CodecKind::kTopk:
      return 8 + 8 * (spec.sampled ? n : codec_keep_count(spec, n));
    case CodecKind::kRandomk:
      return 4 * codec_keep_count(spec, n);
    case CodecKind::kThreshold:
      return 8 + 8 * n;
  }
  return 0;
}

void randomk_affine(uint64_t seed, size_t n, uint64_t* a, uint64_t* b) {
  *a = 1;
  *b = 0;
  if (n <= 1) return;
  uint64_t h = (uint64_t(codec::hash_index(seed, 0)) << 32) | codec::hash_index(seed, 1);
  *b = h % n;
  uint64_t x = 1 + (h >> 17) % (n - 1);
  while (gcd(x, n) != 1) x = x + 1 < n ? x + 1 : 1;
  *a = x;
}

size_t encode(const CodecSpec& spec, const float* x, size_t n, void* out, uint64_t seed,
              uint64_t index_base) {
  GW_CHECK_ARG(n <= 0xffffffffull || spec.quantized() || spec.kind == CodecKind::kNone, "codec ",
               spec.name(), " handles at most 2^32 - 1 elements per tensor, got ", n);
  switch (spec.kind) {
    case CodecKind::kNone:
      if (n) memcpy(out, x, 4 * n);
      return 4 * n;
    case CodecKind::kTopk: {
      auto idx = spec.sampled ? select_topk_sampled(x, n, spec.ratio, seed)
                              : select_topk_exact(x, n, codec_keep_count(spec, n));
      return write_sparse(x, idx, out);
    }
    case CodecKind::kThreshold:
      return write_sparse(x, select_above(x, n, float(spec.threshold)), out);
    case CodecKind::kRandomk: {
      size_t k = codec_keep_count(spec, n);
      uint64_t a, b;
      randomk_affine(seed, n, &a, &b);
      float* o = static_cast<float*>(out);
      for (size_t j = 0; j < k; ++j) o[j] = x[(a * j + b) % n];
      return 4 * k;
    }
    default:
      return use_avx2() ? avx2::quantized_encode(spec, x, n, out, seed, index_base)
                        : generic::quantized_encode(spec, x, n, out, seed, index_base);
  }
}

void decode(const CodecSpec& spec, const void* in, size_t n, float* out, uint64_t seed,
            bool accumulate) {
  switch (spec.kind) {
    case CodecKind::kNone: {
      const float* src = static_cast<const float*>(in);
      for (size_t i = 0; i < n; ++i) out[i] = accumulate ? out[i] + src[i] : src[i];
      return;
    }
    case CodecKind::kTopk:
    case CodecKind::kThreshold: {
      const uint8_t* p = static_cast<const uint8_t*>(in);
      uint64_t nnz;
      memcpy(&nnz, p, 8);
      GW_ENFORCE(nnz <= n, "sparse payload claims ", nnz, " elements of ", n);
      const uint32_t* idx = reinterpret_cast<const uint32_t*>(p + 8);
      const float* val = reinterpret_cast<const float*>(p + 8 + 4 * nnz);
      if (!accumulate) std::fill(out, out + n, 0.0f);
      for (size_t j = 0; j < nnz; ++j) {
        GW_ENFORCE(idx[j] < n, "sparse index ", idx[j], " out of range ", n);
        float v;
        memcpy(&v, val + j, 4);
        out[idx[j]] += v;
      }
      return;
    }
    case CodecKind::kRandomk: {
      size_t k = codec_keep_count(spec, n);
      uint64_t a, b;
      randomk_affine(seed, n, &a, &b);
      const float* v = static_cast<const float*>(in);
      if (!accumulate) std::fill(out, out + n, 0.0f);
      for (size_t j = 0; j < k; ++j) out[(a * j + b) % n] += v[j];
      return;
    }
    default:
      return use_avx2() ? avx2::quantized_decode(spec, in, n, out, accumulate)
                        : generic::quantized_decode(spec, in, n, out, accumulate);
  }
}

}  // namespace gw
