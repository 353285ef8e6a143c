#include "gradwire/common/dtype.h"

#include "gradwire/common/error.h"

namespace gw {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::kFloat32:
      return 4;
    case DType::kFloat64:
      return 8;
    case DType::kFloat16:
      return 2;
    case DType::kBFloat16:
      return 2;
    case DType::kInt8:
      return 1;
    case DType::kUInt8:
      return 1;
    case DType::kInt32:
      return 4;
    case DType::kInt64:
      return 8;
    case DType::kBool:
      return 1;
  }
  GW_THROW(InvalidArgument, "unknown dtype ", int(t));
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kFloat16:
      return "float16";
    case DType::kBFloat16:
      return "bfloat16";
    case DType::kInt8:
      return "int8";
    case DType::kUInt8:
      return "uint8";
    case DType::kInt32:
      return "int32";
    case DType::kInt64:
      return "int64";
    case DType::kBool:
      return "bool";
  }
  return "unknown";
}

const char* reduce_op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
      return "SUM";
    case ReduceOp::kAvg:
      return "AVG";
    case ReduceOp::kMin:
      return "MIN";
    case ReduceOp::kMax:
      return "MAX";
    case ReduceOp::kProduct:
      return "PRODUCT";
    case ReduceOp::kBand:
      return "BAND";
    case ReduceOp::kBor:
      return "BOR";
    case ReduceOp::kBxor:
      return "BXOR";
  }
  return "unknown";
}

bool is_floating(DType t) {
  return t == DType::kFloat32 || t == DType::kFloat64 || t == DType::kFloat16 ||
         t == DType::kBFloat16;
}

void check_reduce_supported(DType t, ReduceOp op) {
  bool bitwise = op == ReduceOp::kBand || op == ReduceOp::kBor || op == ReduceOp::kBxor;
  GW_CHECK_ARG(!(bitwise && is_floating(t)), "reduce op ", reduce_op_name(op),
               " is only defined for integer and bool tensors, got ", dtype_name(t));
  GW_CHECK_ARG(!(op == ReduceOp::kAvg && t == DType::kBool),
               "reduce op AVG is not defined for bool tensors");
}

DType dtype_from_int(int v) {
  GW_CHECK_ARG(v >= 0 && v < kNumDTypes, "unknown dtype code ", v);
  return static_cast<DType>(v);
}

ReduceOp reduce_op_from_int(int v) {
  GW_CHECK_ARG(v >= 0 && v < kNumReduceOps, "unknown reduce op code ", v);
  return static_cast<ReduceOp>(v);
}

}  // namespace gw
