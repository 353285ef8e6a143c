// The per-element operators, shared by CPU kernels and CUDA kernels (__host__ __device__).
#pragma once

#include <cstdint>
#include <type_traits>

#include "gradwire/common/half.h"

namespace gw {
namespace ops {

// Signed integers add/multiply through their unsigned twin so overflow wraps without UB.
template <typename T>
GW_HD T wrap_add(T a, T b) {
  if constexpr (std::is_integral<T>::value && std::is_signed<T>::value) {
    using U = typename std::make_unsigned<T>::type;
    return T(U(a) + U(b));
  } else {
    return a + b;
  }
}
template <typename T>
GW_HD T wrap_mul(T a, T b) {
  if constexpr (std::is_integral<T>::value && std::is_signed<T>::value) {
    using U = typename std::make_unsigned<T>::type;
    return T(U(a) * U(b));
  } else {
    return a * b;
  }
}

struct Sum {
  template <typename T>
  GW_HD T operator()(T a, T b) const {
    return wrap_add(a, b);
  }
};
struct Prod {
  template <typename T>
  GW_HD T operator()(T a, T b) const {
    return wrap_mul(a, b);
  }
};
// MIN/MAX propagate NaN like torch.minimum/maximum.
struct Min {
  template <typename T>
  GW_HD T operator()(T a, T b) const {
    if constexpr (std::is_floating_point<T>::value) {
      if (a != a) return a;
      if (b != b) return b;
    }
    return b < a ? b : a;
  }
};
struct Max {
  template <typename T>
  GW_HD T operator()(T a, T b) const {
    if constexpr (std::is_floating_point<T>::value) {
      if (a != a) return a;
      if (b != b) return b;
    }
    return b > a ? b : a;
  }
};
struct Band {
  template <typename T>
  GW_HD T operator()(T a, T b) const {
    return a & b;
  }
};
struct Bor {
  template <typename T>
  GW_HD T operator()(T a, T b) const {
    return a | b;
  }
};
struct Bxor {
  template <typename T>
  GW_HD T operator()(T a, T b) const {
    return a ^ b;
  }
};

}  // namespace ops
}  // namespace gw
