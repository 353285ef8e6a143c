// Direct access to the reduction kernels and half conversions, for tests and benchmarks.
#include "gradwire/common/dtype.h"
#include "gradwire/common/half.h"
#include "gradwire/reduce/reduce.h"
#include "py_common.h"

namespace gw {

void register_kernels(py::module_& m) {
  m.def(
      "reduce_into",
      [](uintptr_t dst, uintptr_t src, size_t count, int dtype, int op) {
        DType t = dtype_from_int(dtype);
        ReduceOp o = reduce_op_from_int(op);
        check_reduce_supported(t, o);
        py::gil_scoped_release nogil;
        reduce_into(reinterpret_cast<void*>(dst), reinterpret_cast<const void*>(src), count, t, o);
      },
      py::arg("dst"), py::arg("src"), py::arg("count"), py::arg("dtype"), py::arg("op"),
      "dst[i] = dst[i] (op) src[i] over raw buffers (AVG reduces as SUM).");
  m.def(
      "reduce_into_with",
      [](const std::string& level, uintptr_t dst, uintptr_t src, size_t count, int dtype, int op) {
        DType t = dtype_from_int(dtype);
        ReduceOp o = reduce_op_from_int(op);
        check_reduce_supported(t, o);
        py::gil_scoped_release nogil;
        reduce_into_with(level.c_str(), reinterpret_cast<void*>(dst),
                         reinterpret_cast<const void*>(src), count, t, o);
      },
      "reduce_into with a chosen kernel build ('generic' or 'avx2').");
  m.def("simd_level", []() { return std::string(simd_level()); });
  m.def(
      "divide_by",
      [](uintptr_t buf, size_t count, int dtype, int divisor) {
        py::gil_scoped_release nogil;
        divide_by(reinterpret_cast<void*>(buf), count, dtype_from_int(dtype), divisor);
      },
      py::arg("buf"), py::arg("count"), py::arg("dtype"), py::arg("divisor"));
  m.def("f32_to_f16", [](float f) { return f32_to_f16(f); });
  m.def("f16_to_f32", [](uint16_t h) { return f16_to_f32(h); });
  m.def("f32_to_bf16", [](float f) { return f32_to_bf16(f); });
  m.def("bf16_to_f32", [](uint16_t h) { return bf16_to_f32(h); });
}

}  // namespace gw
