// Helpers shared by the register_*.cc files: the bridge between C++ errors and Python's.
#pragma once

#include <pybind11/pybind11.h>

#include <exception>
#include <memory>
#include <vector>

#include "gradwire/compress/error_feedback.h"
#include "gradwire/engine/communicator.h"
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
void register_ps(py::module_& m);

// Runs `fn(exception_or_None)` with the GIL on the thread that completes the op (None: no
// callback). `owners` (the buffers' Python objects) stay referenced until the op has completed
// and its callback is gone; they are released under the GIL.
Work::Callback wrap_callback(py::object fn, std::vector<py::object> owners = {});

// Submits an op built by f(callback) with the GIL released and returns its Work. A call with
// no callback whose caller waits right away (`wait`: the inline_ok hint) waits here too and
// returns None, raising the op's error: one Python call per synchronous op instead of three
// (submit, Work object, wait). `owners` as in wrap_callback.
template <typename F>
py::object submit_op(py::object cb, bool wait, F&& f, std::vector<py::object> owners = {}) {
  bool no_callback = cb.is_none();
  // A caller that waits here holds its buffers for the whole op already.
  if (wait && no_callback) owners.clear();
  Work::Callback c = wrap_callback(std::move(cb), std::move(owners));
  bool waited = false;
  std::shared_ptr<Work> work;
  {
    py::gil_scoped_release nogil;
    work = f(std::move(c));
    if (wait && no_callback) {
      work->wait();
      waited = true;
    }
  }
  if (waited) return py::none();
  return py::cast(std::move(work));
}

// The Python exception object for a C++ error (GIL held).
py::object to_py_exception(std::exception_ptr e);
// Raises the C++ error as its Python exception (sets the error indicator; GIL held).
void set_py_error(std::exception_ptr e);

// An error-feedback residual as float32 bytes for Python, and back (register_compress.cc);
// shared by the communicator's and the parameter-server client's residual stores.
py::bytes residual_to_bytes(const ResidualStore& store, const std::string& key);
void residual_from_bytes(ResidualStore& store, const std::string& key, const py::bytes& data);

// comm.allreduce's direct synchronous path (fast_allreduce.cc).
void register_fast_allreduce(py::class_<Communicator, std::shared_ptr<Communicator>>& cls);

}  // namespace gw
