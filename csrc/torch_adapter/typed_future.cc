// gradwire._torch_future: creates and completes torch futures typed Future[List[Tensor]], which
// torch's C++ comm hooks require. This is the one piece built against torch's headers; the core
// stays torch-free. It uses the pybind11 bundled with torch, so the futures it returns are the
// very torch._C.Future objects torch expects.
#include <torch/csrc/jit/python/pybind_utils.h>
#include <torch/csrc/jit/python/python_ivalue.h>
#include <torch/extension.h>

namespace py = pybind11;

namespace {

c10::intrusive_ptr<c10::ivalue::Future> unwrap(const py::object& obj) {
  return obj.cast<std::shared_ptr<torch::jit::PythonFutureWrapper>>()->fut;
}

}  // namespace

PYBIND11_MODULE(_torch_future, m) {
  m.def("new_tensor_list_future", []() -> py::object {
    auto fut = c10::make_intrusive<c10::ivalue::Future>(c10::ListType::ofTensors());
    return torch::jit::toPyObject(c10::IValue(fut));
  });
  m.def("complete", [](const py::object& pyfut, std::vector<at::Tensor> tensors) {
    auto fut = unwrap(pyfut);
    c10::List<at::Tensor> list(std::move(tensors));
    py::gil_scoped_release nogil;  // callbacks run inline and may take the GIL themselves
    fut->markCompleted(c10::IValue(std::move(list)));
  });
  m.def("fail", [](const py::object& pyfut, const py::object& error) {
    auto fut = unwrap(pyfut);
    // Keep the Python exception itself, so fut.wait() re-raises it with its own type.
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(error.ptr())), error.ptr());
    std::exception_ptr eptr = std::make_exception_ptr(py::error_already_set());
    py::gil_scoped_release nogil;
    fut->setError(eptr);
  });
}
