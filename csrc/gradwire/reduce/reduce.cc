#include "gradwire/reduce/reduce.h"

#include <cstdint>

#include "gradwire/common/error.h"
#include "gradwire/common/half.h"
#include "gradwire/reduce/reduce_ops.h"

namespace gw {
namespace {

// Plain loops over restrict pointers: gcc -O3 vectorises them for the native types. The
// runtime-dispatched AVX2/AVX-512 paths belong here when profiling asks for them.
template <typename T, typename Op>
void reduce_native(void* dst_v, const void* src_v, size_t n, Op op) {
  T* __restrict__ dst = static_cast<T*>(dst_v);
  const T* __restrict__ src = static_cast<const T*>(src_v);
  for (size_t i = 0; i < n; ++i) dst[i] = op(dst[i], src[i]);
}

template <typename Op, float (*ToF32)(uint16_t), uint16_t (*FromF32)(float)>
void reduce_half(void* dst_v, const void* src_v, size_t n, Op op) {
  uint16_t* __restrict__ dst = static_cast<uint16_t*>(dst_v);
  const uint16_t* __restrict__ src = static_cast<const uint16_t*>(src_v);
  for (size_t i = 0; i < n; ++i) dst[i] = FromF32(op(ToF32(dst[i]), ToF32(src[i])));
}

// bool is stored as one byte 0/1: SUM and MAX are logical or, PRODUCT and MIN logical and.
void reduce_bool(void* dst_v, const void* src_v, size_t n, ReduceOp op) {
  uint8_t* __restrict__ dst = static_cast<uint8_t*>(dst_v);
  const uint8_t* __restrict__ src = static_cast<const uint8_t*>(src_v);
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kMax:
    case ReduceOp::kBor:
      for (size_t i = 0; i < n; ++i) dst[i] = uint8_t((dst[i] | src[i]) != 0);
      return;
    case ReduceOp::kProduct:
    case ReduceOp::kMin:
    case ReduceOp::kBand:
      for (size_t i = 0; i < n; ++i) dst[i] = uint8_t((dst[i] != 0) & (src[i] != 0));
      return;
    case ReduceOp::kBxor:
      for (size_t i = 0; i < n; ++i) dst[i] = uint8_t((dst[i] != 0) ^ (src[i] != 0));
      return;
    case ReduceOp::kAvg:
      break;
  }
  GW_THROW(InvalidArgument, "reduce op ", reduce_op_name(op), " is not defined for bool");
}

template <typename T>
void reduce_typed(void* dst, const void* src, size_t n, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return reduce_native<T>(dst, src, n, ops::Sum());
    case ReduceOp::kProduct:
      return reduce_native<T>(dst, src, n, ops::Prod());
    case ReduceOp::kMin:
      return reduce_native<T>(dst, src, n, ops::Min());
    case ReduceOp::kMax:
      return reduce_native<T>(dst, src, n, ops::Max());
    case ReduceOp::kBand:
    case ReduceOp::kBor:
    case ReduceOp::kBxor:
      if constexpr (std::is_integral<T>::value) {
        if (op == ReduceOp::kBand) return reduce_native<T>(dst, src, n, ops::Band());
        if (op == ReduceOp::kBor) return reduce_native<T>(dst, src, n, ops::Bor());
        return reduce_native<T>(dst, src, n, ops::Bxor());
      }
      break;
  }
  GW_THROW(InvalidArgument, "reduce op ", reduce_op_name(op), " is not defined for this dtype");
}

template <float (*ToF32)(uint16_t), uint16_t (*FromF32)(float)>
void reduce_half_typed(void* dst, const void* src, size_t n, ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return reduce_half<ops::Sum, ToF32, FromF32>(dst, src, n, ops::Sum());
    case ReduceOp::kProduct:
      return reduce_half<ops::Prod, ToF32, FromF32>(dst, src, n, ops::Prod());
    case ReduceOp::kMin:
      return reduce_half<ops::Min, ToF32, FromF32>(dst, src, n, ops::Min());
    case ReduceOp::kMax:
      return reduce_half<ops::Max, ToF32, FromF32>(dst, src, n, ops::Max());
    default:
      break;
  }
  GW_THROW(InvalidArgument, "reduce op ", reduce_op_name(op), " is not defined for half types");
}

template <typename T>
void divide_typed(void* buf_v, size_t n, int divisor) {
  T* buf = static_cast<T*>(buf_v);
  for (size_t i = 0; i < n; ++i) buf[i] = T(buf[i] / T(divisor));
}

template <float (*ToF32)(uint16_t), uint16_t (*FromF32)(float)>
void divide_half(void* buf_v, size_t n, int divisor) {
  uint16_t* buf = static_cast<uint16_t*>(buf_v);
  float d = float(divisor);
  for (size_t i = 0; i < n; ++i) buf[i] = FromF32(ToF32(buf[i]) / d);
}

}  // namespace

void reduce_into(void* dst, const void* src, size_t count, DType dtype, ReduceOp op) {
  if (count == 0) return;
  switch (dtype) {
    case DType::kFloat32:
      return reduce_typed<float>(dst, src, count, op);
    case DType::kFloat64:
      return reduce_typed<double>(dst, src, count, op);
    case DType::kFloat16:
      return reduce_half_typed<f16_to_f32, f32_to_f16>(dst, src, count, op);
    case DType::kBFloat16:
      return reduce_half_typed<bf16_to_f32, f32_to_bf16>(dst, src, count, op);
    case DType::kInt8:
      return reduce_typed<int8_t>(dst, src, count, op);
    case DType::kUInt8:
      return reduce_typed<uint8_t>(dst, src, count, op);
    case DType::kInt32:
      return reduce_typed<int32_t>(dst, src, count, op);
    case DType::kInt64:
      return reduce_typed<int64_t>(dst, src, count, op);
    case DType::kBool:
      return reduce_bool(dst, src, count, op);
  }
  GW_THROW(InvalidArgument, "unknown dtype ", int(dtype));
}

void divide_by(void* buf, size_t count, DType dtype, int divisor) {
  if (count == 0 || divisor == 1) return;
  switch (dtype) {
    case DType::kFloat32:
      return divide_typed<float>(buf, count, divisor);
    case DType::kFloat64:
      return divide_typed<double>(buf, count, divisor);
    case DType::kFloat16:
      return divide_half<f16_to_f32, f32_to_f16>(buf, count, divisor);
    case DType::kBFloat16:
      return divide_half<bf16_to_f32, f32_to_bf16>(buf, count, divisor);
    case DType::kInt8:
      return divide_typed<int8_t>(buf, count, divisor);
    case DType::kUInt8:
      return divide_typed<uint8_t>(buf, count, divisor);
    case DType::kInt32:
      return divide_typed<int32_t>(buf, count, divisor);
    case DType::kInt64:
      return divide_typed<int64_t>(buf, count, divisor);
    case DType::kBool:
      break;
  }
  GW_THROW(InvalidArgument, "AVG is not defined for ", dtype_name(dtype));
}

}  // namespace gw
