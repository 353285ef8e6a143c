#include "gradwire/ps/push_codec.h"

#include <cstring>

#include "gradwire/common/error.h"

namespace gw {
namespace ps {

size_t encode_push(const CodecSpec& spec, ResidualStore* residuals, const std::string& key,
                   float* x, size_t n, uint64_t seed, std::vector<char>* out) {
  out->resize(encoded_bytes(spec, n));
  const bool feedback = residuals && spec.error_feedback;
  if (feedback) residuals->compensate(key, x, n);
  size_t k = encode(spec, x, n, out->data(), seed, 0);
  out->resize(k);
  if (feedback) {
    std::vector<float> sent(n);
    decode(spec, out->data(), n, sent.data(), seed, false);
    residuals->update(key, x, sent.data(), n);
  }
  return k;
}

void decode_push(const CodecSpec& spec, uint64_t seed, const char* data, size_t bytes, size_t n,
                 float* out, const std::string& what) {
  GW_CHECK_ARG(spec.lossy(), what, ": a compressed push must name a lossy codec, not ",
               spec.name());
  if (spec.kind == CodecKind::kTopk || spec.kind == CodecKind::kThreshold) {
    // Sparse form: u64 nnz | nnz x u32 index | nnz x float32 value.
    uint64_t nnz = 0;
    GW_CHECK_ARG(bytes >= 8, what, ": ", spec.name(), " push of ", bytes, " bytes has no header");
    memcpy(&nnz, data, 8);
    GW_CHECK_ARG(nnz <= n && bytes == 8 + 8 * nnz, what, ": ", spec.name(), " push of ", bytes,
                 " bytes claims ", nnz, " of ", n, " elements");
  } else {
    size_t want = encoded_bytes(spec, n);
    GW_CHECK_ARG(bytes == want, what, ": ", spec.name(), " push of ", bytes, " bytes for ", n,
                 " elements, expected ", want);
  }
  decode(spec, data, n, out, seed, false);
}

}  // namespace ps
}  // namespace gw
