#include "gradwire/ps/optimizer.h"

#include <cmath>

namespace gw {
namespace ps {

std::string OptSpec::describe() const {
  switch (kind) {
    case OptKind::kSgd:
      return str("SGD(lr=", lr, ", momentum=", momentum, ")");
    case OptKind::kAdagrad:
      return str("Adagrad(lr=", lr, ", eps=", eps, ")");
    case OptKind::kAdam:
      return str("Adam(lr=", lr, ", betas=(", beta1, ", ", beta2, "), eps=", eps, ")");
  }
  return "unknown optimizer";
}

void OptSpec::validate() const {
  GW_CHECK_ARG(kind == OptKind::kSgd || kind == OptKind::kAdagrad || kind == OptKind::kAdam,
               "unknown optimizer kind ", uint32_t(kind));
  GW_CHECK_ARG(lr >= 0 && std::isfinite(lr), describe(), ": lr must be finite and >= 0");
  GW_CHECK_ARG(momentum >= 0 && momentum < 1, describe(), ": momentum must be in [0, 1)");
  GW_CHECK_ARG(eps >= 0, describe(), ": eps must be >= 0");
  GW_CHECK_ARG(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1, describe(),
               ": betas must be in [0, 1)");
}

void OptSpec::encode(Writer& w) const {
  w.u32(uint32_t(kind));
  w.f64(lr);
  w.f64(momentum);
  w.f64(eps);
  w.f64(beta1);
  w.f64(beta2);
}

OptSpec OptSpec::decode(Reader& r) {
  OptSpec o;
  o.kind = OptKind(r.u32());
  o.lr = r.f64();
  o.momentum = r.f64();
  o.eps = r.f64();
  o.beta1 = r.f64();
  o.beta2 = r.f64();
  return o;
}

size_t OptSpec::state_slots() const {
  switch (kind) {
    case OptKind::kSgd:
      return momentum > 0 ? 1 : 0;
    case OptKind::kAdagrad:
      return 1;
    case OptKind::kAdam:
      return 2;
  }
  return 0;
}

// Called once per sparse row (n = dim, often 64) as well as per dense shard: no allocation, one
// switch, and loops the compiler vectorizes (CMakeLists.txt builds this file without errno
// semantics for std::sqrt, which would otherwise keep the Adagrad and Adam loops scalar).
void apply_update(const OptSpec& opt, float* param, float* state, const float* grad, size_t n,
                  int64_t step, size_t slot_stride) {
  const float lr = float(opt.lr);
  switch (opt.kind) {
    case OptKind::kSgd:
      if (opt.momentum > 0) {
        const float m = float(opt.momentum);
        for (size_t i = 0; i < n; ++i) {
          // torch: the first step sets buf = grad; m * 0 + grad is the same value.
          state[i] = m * state[i] + grad[i];
          param[i] -= lr * state[i];
        }
      } else {
        for (size_t i = 0; i < n; ++i) param[i] -= lr * grad[i];
      }
      return;
    case OptKind::kAdagrad: {
      const float eps = float(opt.eps);
      for (size_t i = 0; i < n; ++i) {
        state[i] += grad[i] * grad[i];
        param[i] -= lr * grad[i] / (std::sqrt(state[i]) + eps);
      }
      return;
    }
    case OptKind::kAdam: {
      const float b1 = float(opt.beta1), b2 = float(opt.beta2), eps = float(opt.eps);
      const double bc1 = 1.0 - std::pow(opt.beta1, double(step));
      const double bc2 = 1.0 - std::pow(opt.beta2, double(step));
      const float step_size = float(opt.lr / bc1);
      const float bc2_sqrt = float(std::sqrt(bc2));
      float* m = state;
      float* v = state + (slot_stride ? slot_stride : n);
      for (size_t i = 0; i < n; ++i) {
        m[i] = b1 * m[i] + (1 - b1) * grad[i];
        v[i] = b2 * v[i] + (1 - b2) * grad[i] * grad[i];
        param[i] -= step_size * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
      }
      return;
    }
  }
}

}  // namespace ps
}  // namespace gw
