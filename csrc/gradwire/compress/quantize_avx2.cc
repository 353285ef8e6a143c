// AVX2 + F16C + FMA build of the quantized codec kernels; used only when the CPU reports those
// features (reduce/reduce_avx2.cc explains why every header comes before the target pragma).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "gradwire/common/error.h"
#include "gradwire/common/half.h"
#include "gradwire/compress/codec.h"
#include "gradwire/compress/codec_ops.h"

#if defined(__x86_64__)
#pragma GCC push_options
#pragma GCC target("avx2,f16c,fma")
#define GW_KERNEL_NS avx2
#define GW_CODEC_F16C 1
#include "gradwire/compress/quantize_kernels.inc"
#pragma GCC pop_options
#else
#define GW_KERNEL_NS avx2
#include "gradwire/compress/quantize_kernels.inc"
#endif
