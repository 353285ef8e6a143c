#include "gradwire/common/error.h"
#include "py_common.h"

namespace gw {
namespace {

py::object& errors_module() {
  static py::object* mod = new py::object(py::module_::import("gradwire.errors"));
  return *mod;
}

// The most specific Python class for the C++ error, and its message.
std::pair<py::object, std::string> classify(std::exception_ptr e) {
  py::object& mod = errors_module();
  try {
    std::rethrow_exception(e);
  } catch (const TimeoutError& x) {
    return {mod.attr("TimeoutError"), x.what()};
  } catch (const PeerError& x) {
    return {mod.attr("PeerError"), x.what()};
  } catch (const MismatchError& x) {
    return {mod.attr("MismatchError"), x.what()};
  } catch (const ProtocolError& x) {
    return {mod.attr("ProtocolError"), x.what()};
  } catch (const InvalidArgument& x) {
    return {mod.attr("InvalidArgumentError"), x.what()};
  } catch (const std::exception& x) {
    return {mod.attr("GradwireError"), x.what()};
  }
}

}  // namespace

void set_py_error(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const Error&) {
    auto [cls, msg] = classify(e);
    PyErr_SetString(cls.ptr(), msg.c_str());
  } catch (const std::exception& x) {
    PyErr_SetString(PyExc_RuntimeError, x.what());  // as pybind11 translates them
  }
}

py::object to_py_exception(std::exception_ptr e) {
  auto [cls, msg] = classify(e);
  return cls(msg);
}

void register_errors(py::module_& m) {
  errors_module();  // import now, while holding the GIL at module init
  py::register_exception_translator([](std::exception_ptr p) {
    if (!p) return;
    try {
      std::rethrow_exception(p);
    } catch (const Error&) {
      auto [cls, msg] = classify(p);
      PyErr_SetString(cls.ptr(), msg.c_str());
    }
  });
  (void)m;
}

}  // namespace gw
