// The element types and reduction operators the engine understands. The API is type-erased
// (pointer + DType + count); templates appear only inside kernels, instantiated from one switch.
#pragma once

#include <cstddef>
#include <cstdint>

namespace gw {

enum class DType : uint8_t {
  kFloat32 = 0,
  kFloat64 = 1,
  kFloat16 = 2,
  kBFloat16 = 3,
  kInt8 = 4,
  kUInt8 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kBool = 8,
};
constexpr int kNumDTypes = 9;

enum class ReduceOp : uint8_t {
  kSum = 0,
  kAvg = 1,
  kMin = 2,
  kMax = 3,
  kProduct = 4,
  kBand = 5,
  kBor = 6,
  kBxor = 7,
};
constexpr int kNumReduceOps = 8;

size_t dtype_size(DType t);
const char* dtype_name(DType t);
const char* reduce_op_name(ReduceOp op);
bool is_floating(DType t);
// Throws InvalidArgument when op is not defined for t (e.g. BXOR on float32, AVG on bool).
void check_reduce_supported(DType t, ReduceOp op);
DType dtype_from_int(int v);         // validates the range
ReduceOp reduce_op_from_int(int v);  // validates the range

}  // namespace gw
