// Helpers shared by the register_*.cc files: the bridge between C++ errors and Python's.
#pragma once

#include <pybind11/pybind11.h>

#include <exception>
#include <memory>

#include "gradwire/engine/work.h"

namespace gw {
namespace py = pybind11;

// Imports gradwire.errors and installs the C++ -> Python exception translation.
void register_errors(py::module_& m);
void register_store(py::module_& m);
void register_engine(py::module_& m);
void register_kernels(py::module_& m);
void register_protocol(py::module_& m);
void register_compress(py::module_& m);

// Runs `fn(exception_or_None)` with the GIL on the thread that completes the op (None: no
// callback).
Work::Callback wrap_callback(py::object fn);

// Submits an op built by f(callback) with the GIL released.
template <typename F>
std::shared_ptr<Work> submit_op(py::object cb, F&& f) {
  Work::Callback c = wrap_callback(std::move(cb));
  py::gil_scoped_release nogil;
  return f(std::move(c));
}

// The Python exception object for a C++ error (GIL held).
py::object to_py_exception(std::exception_ptr e);

}  // namespace gw
