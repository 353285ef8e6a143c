#include "gradwire/ps/initializer.h"

#include <cmath>

#include "gradwire/ps/partitioner.h"

namespace gw {
namespace ps {
namespace {

// The stream of row `row`: uniform doubles in (0, 1) from a counter, splitmix64(base + i).
uint64_t row_base(uint64_t seed, int64_t row) {
  return splitmix64(seed ^ splitmix64(uint64_t(row)));
}
double unit(uint64_t base, uint64_t i) {
  uint64_t x = splitmix64(base + i * 0x9e3779b97f4a7c15ull);
  return (double(x >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

}  // namespace

std::string InitSpec::describe() const {
  switch (kind) {
    case InitKind::kZeros:
      return "Zeros()";
    case InitKind::kNormal:
      return str("Normal(mean=", a, ", std=", b, ", seed=", seed, ")");
    case InitKind::kUniform:
      return str("Uniform(low=", a, ", high=", b, ", seed=", seed, ")");
  }
  return "unknown initializer";
}

void InitSpec::validate() const {
  GW_CHECK_ARG(kind == InitKind::kZeros || kind == InitKind::kNormal || kind == InitKind::kUniform,
               "unknown initializer kind ", uint32_t(kind));
  if (kind == InitKind::kNormal) GW_CHECK_ARG(b >= 0, describe(), ": std must be >= 0");
  if (kind == InitKind::kUniform) GW_CHECK_ARG(a <= b, describe(), ": low must be <= high");
}

void InitSpec::encode(Writer& w) const {
  w.u32(uint32_t(kind));
  w.f64(a);
  w.f64(b);
  w.u64(seed);
}

InitSpec InitSpec::decode(Reader& r) {
  InitSpec s;
  s.kind = InitKind(r.u32());
  s.a = r.f64();
  s.b = r.f64();
  s.seed = r.u64();
  return s;
}

void init_row(const InitSpec& init, int64_t row, float* out, uint32_t dim) {
  const uint64_t base = row_base(init.seed, row);
  switch (init.kind) {
    case InitKind::kZeros:
      for (uint32_t i = 0; i < dim; ++i) out[i] = 0.0f;
      return;
    case InitKind::kUniform:
      for (uint32_t i = 0; i < dim; ++i) out[i] = float(init.a + (init.b - init.a) * unit(base, i));
      return;
    case InitKind::kNormal:
      // Box-Muller: each pair of uniforms gives two independent normals.
      for (uint32_t i = 0; i < dim; i += 2) {
        double r = std::sqrt(-2.0 * std::log(unit(base, i))),
               t = 6.283185307179586 * unit(base, i + 1);
        out[i] = float(init.a + init.b * r * std::cos(t));
        if (i + 1 < dim) out[i + 1] = float(init.a + init.b * r * std::sin(t));
      }
      return;
  }
}

}  // namespace ps
}  // namespace gw
