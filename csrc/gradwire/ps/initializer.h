// How a sparse table creates a row the first time it is touched. The value depends only on the
// table's seed and the row id (never on which server holds the row or when it is created), so a
// job with any number of servers, or a restarted one, sees the same rows.
#pragma once

#include <cstdint>
#include <string>

#include "gradwire/ps/messages.h"

namespace gw {
namespace ps {

enum class InitKind : uint32_t { kZeros = 1, kNormal = 2, kUniform = 3 };

struct InitSpec {
  InitKind kind = InitKind::kZeros;
  double a = 0.0;  // Normal: mean; Uniform: low
  double b = 0.0;  // Normal: std;  Uniform: high
  uint64_t seed = 0;

  bool operator==(const InitSpec& o) const {
    return kind == o.kind && a == o.a && b == o.b && seed == o.seed;
  }
  std::string describe() const;
  void validate() const;
  void encode(Writer& w) const;
  static InitSpec decode(Reader& r);
};

// Fills row `row` (dim floats).
void init_row(const InitSpec& init, int64_t row, float* out, uint32_t dim);

}  // namespace ps
}  // namespace gw
