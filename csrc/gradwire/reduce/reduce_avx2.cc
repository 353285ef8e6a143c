// AVX2 + F16C + FMA build of the reduction kernels; used only when the CPU reports those
// features. Every header is included before the target pragma, so shared inline and template
// code (which the linker may merge across files) stays baseline code; only the kernels defined
// in reduce_kernels.inc are compiled for AVX2.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "gradwire/common/error.h"
#include "gradwire/common/half.h"
#include "gradwire/reduce/reduce.h"
#include "gradwire/reduce/reduce_ops.h"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,f16c,fma")
// The target pragma enables the instructions but does not define __F16C__: say it ourselves.
#define GW_REDUCE_F16C 1
#define GW_KERNEL_NS avx2
#include "gradwire/reduce/reduce_kernels.inc"
#pragma GCC pop_options
#else
#define GW_KERNEL_NS avx2
#include "gradwire/reduce/reduce_kernels.inc"
#endif
