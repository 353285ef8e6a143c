// Baseline x86-64 (SSE2) build of the reduction kernels.
#define GW_KERNEL_NS generic
#include "gradwire/reduce/reduce_kernels.inc"
