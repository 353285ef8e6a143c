// Element-wise reduction kernels: dst[i] = dst[i] (op) src[i]. AVG reduces as SUM; the caller
// divides once at the end with divide_by(). fp16/bf16 compute each step in fp32 and round once.
// Integer arithmetic wraps (two's complement), as torch's does.
#pragma once

#include <cstddef>

#include "gradwire/common/dtype.h"

namespace gw {

void reduce_into(void* dst, const void* src, size_t count, DType dtype, ReduceOp op);

// buf[i] /= divisor (integers truncate toward zero). Used to finish AVG.
void divide_by(void* buf, size_t count, DType dtype, int divisor);

// "avx2" or "generic": the kernel build in use (chosen from the CPU; GRADWIRE_SIMD=generic).
const char* simd_level();
// A specific build, for tests and benchmarks that compare them.
void reduce_into_with(const char* level, void* dst, const void* src, size_t count, DType dtype,
                      ReduceOp op);

}  // namespace gw
