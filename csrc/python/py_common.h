// Helpers shared by the register_*.cc files: the bridge between C++ errors and Python's.
#pragma once

#include <pybind11/pybind11.h>

#include <exception>

namespace gw {
namespace py = pybind11;

// Imports gradwire.errors and installs the C++ -> Python exception translation.
void register_errors(py::module_& m);
void register_store(py::module_& m);
void register_engine(py::module_& m);
void register_kernels(py::module_& m);
void register_protocol(py::module_& m);
void register_ps(py::module_& m);

// The Python exception object for a C++ error (GIL held).
py::object to_py_exception(std::exception_ptr e);

}  // namespace gw
