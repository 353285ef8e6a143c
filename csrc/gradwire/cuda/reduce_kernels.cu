// Device versions of the reduction kernels, built from the same __host__ __device__ operators
// (reduce/reduce_ops.h, common/half.h) the CPU kernels use, so CPU tests cover their logic.
#include <cuda_runtime.h>

#include <cstdint>

#include "gradwire/common/dtype.h"
#include "gradwire/common/half.h"
#include "gradwire/reduce/reduce_ops.h"

namespace gw {
namespace cuda {
namespace {

template <typename T, typename Op>
__global__ void reduce_kernel(T* dst, const T* src, size_t n, Op op) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    dst[i] = op(dst[i], src[i]);
  }
}

template <typename Op, bool kBf16>
__global__ void reduce_half_kernel(uint16_t* dst, const uint16_t* src, size_t n, Op op) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n;
       i += size_t(gridDim.x) * blockDim.x) {
    float a = kBf16 ? bf16_to_f32(dst[i]) : f16_to_f32(dst[i]);
    float b = kBf16 ? bf16_to_f32(src[i]) : f16_to_f32(src[i]);
    float r = op(a, b);
    dst[i] = kBf16 ? f32_to_bf16(r) : f32_to_f16(r);
  }
}

unsigned grid_for(size_t n) {
  size_t blocks = (n + 255) / 256;
  return unsigned(blocks > 4096 ? 4096 : (blocks == 0 ? 1 : blocks));
}

template <typename Op>
cudaError_t launch(void* dst, const void* src, size_t n, DType dtype, Op op, cudaStream_t s) {
  unsigned g = grid_for(n);
  switch (dtype) {
    case DType::kFloat32:
      reduce_kernel<<<g, 256, 0, s>>>(static_cast<float*>(dst), static_cast<const float*>(src), n,
                                      op);
      break;
    case DType::kFloat64:
      reduce_kernel<<<g, 256, 0, s>>>(static_cast<double*>(dst), static_cast<const double*>(src), n,
                                      op);
      break;
    case DType::kFloat16:
      reduce_half_kernel<Op, false>
          <<<g, 256, 0, s>>>(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(src), n, op);
      break;
    case DType::kBFloat16:
      reduce_half_kernel<Op, true>
          <<<g, 256, 0, s>>>(static_cast<uint16_t*>(dst), static_cast<const uint16_t*>(src), n, op);
      break;
    case DType::kInt32:
      reduce_kernel<<<g, 256, 0, s>>>(static_cast<int32_t*>(dst), static_cast<const int32_t*>(src),
                                      n, op);
      break;
    case DType::kInt64:
      reduce_kernel<<<g, 256, 0, s>>>(static_cast<int64_t*>(dst), static_cast<const int64_t*>(src),
                                      n, op);
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace

// dst = dst (op) src on the device, for SUM/AVG/MIN/MAX/PRODUCT on the floating and 32/64-bit
// integer types; returns cudaErrorInvalidValue for other combinations.
cudaError_t reduce_into_device(void* dst, const void* src, size_t n, DType dtype, ReduceOp op,
                               cudaStream_t stream) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return launch(dst, src, n, dtype, ops::Sum(), stream);
    case ReduceOp::kMin:
      return launch(dst, src, n, dtype, ops::Min(), stream);
    case ReduceOp::kMax:
      return launch(dst, src, n, dtype, ops::Max(), stream);
    case ReduceOp::kProduct:
      return launch(dst, src, n, dtype, ops::Prod(), stream);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace cuda
}  // namespace gw
