// Baseline x86-64 (SSE2) build of the quantized codec kernels.
#define GW_KERNEL_NS generic
#include "gradwire/compress/quantize_kernels.inc"
