// Run-time choice of the kernel build (reduce_kernels.inc). GRADWIRE_SIMD=generic forces the
// baseline build, e.g. to compare.
#include "gradwire/reduce/reduce.h"

#include "gradwire/common/config.h"
#include "gradwire/common/error.h"

namespace gw {
namespace generic {
void reduce_into(void* dst, const void* src, size_t count, DType dtype, ReduceOp op);
void divide_by(void* buf, size_t count, DType dtype, int divisor);
}  // namespace generic
namespace avx2 {
void reduce_into(void* dst, const void* src, size_t count, DType dtype, ReduceOp op);
void divide_by(void* buf, size_t count, DType dtype, int divisor);
}  // namespace avx2

namespace {
bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c") &&
         __builtin_cpu_supports("fma");
#else
  return false;
#endif
}
}  // namespace

const char* simd_level() {
  static const char* level =
      (Config::get().simd != "generic" && cpu_has_avx2()) ? "avx2" : "generic";
  return level;
}

void reduce_into_with(const char* level, void* dst, const void* src, size_t count, DType dtype,
                      ReduceOp op) {
  std::string l(level);
  GW_CHECK_ARG(l == "generic" || (l == "avx2" && cpu_has_avx2()), "kernel level '", l,
               "' is not available on this CPU");
  if (l == "avx2") return avx2::reduce_into(dst, src, count, dtype, op);
  return generic::reduce_into(dst, src, count, dtype, op);
}

void reduce_into(void* dst, const void* src, size_t count, DType dtype, ReduceOp op) {
  static const bool use_avx2 = std::string(simd_level()) == "avx2";
  if (use_avx2) return avx2::reduce_into(dst, src, count, dtype, op);
  generic::reduce_into(dst, src, count, dtype, op);
}

void divide_by(void* buf, size_t count, DType dtype, int divisor) {
  static const bool use_avx2 = std::string(simd_level()) == "avx2";
  if (use_avx2) return avx2::divide_by(buf, count, dtype, divisor);
  generic::divide_by(buf, count, dtype, divisor);
}

}  // namespace gw
