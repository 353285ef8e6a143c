// gradwire.comm's synchronous allreduce as a plain CPython builtin (METH_FASTCALL), bound to one
// communicator through a capsule. A small allreduce over shared memory is a few microseconds of
// work at most, and pybind11's dispatcher (argument vectors, type casters, keyword handling)
// and the Python-level checks were a large share of it (docs/benchmarks.md).
//
//   fn = communicator.sync_allreduce_fn(dtype_codes, op_codes)   # once
//   fn(array, op)  ->  None when done, or NotImplemented
//
// It accepts only what the Python layer's checks accept: a numpy array (or subclass) whose dtype
// is one of `dtype_codes` (matched by identity, numpy's dtype singletons) and whose buffer is C
// contiguous, with `op` a key of `op_codes`. For anything else it returns NotImplemented and
// touches nothing, and the caller takes the general path, which validates (with the usual
// error messages) or handles the rarer spellings (an equal but distinct dtype object, "SUM").
#include <utility>
#include <vector>

#include "gradwire/common/dtype.h"
#include "py_common.h"

namespace gw {
namespace {

constexpr const char* kCapsule = "gradwire.sync_allreduce";

// The leading fields of numpy's array object (PyArrayObject_fields in numpy's ndarraytypes.h,
// fixed by its ABI: numpy's inline accessors such as PyArray_DATA compile to reads at these
// offsets). Reading them costs a few loads where `a.dtype` and the buffer protocol cost ~750
// instructions per call. The layout is verified on probe arrays when the function is made (see
// numpy_layout_matches); if it does not match, the slow readers are used.
struct NumpyArrayHead {
  PyObject_HEAD char* data;
  int nd;
  Py_ssize_t* dimensions;
  Py_ssize_t* strides;
  PyObject* base;
  PyObject* descr;
  int flags;
};
constexpr int kNpyCContiguous = 0x0001;  // NPY_ARRAY_C_CONTIGUOUS
constexpr int kNpyWriteable = 0x0400;    // NPY_ARRAY_WRITEABLE

struct SyncAllreduce {
  std::shared_ptr<Communicator> comm;
  PyTypeObject* ndarray = nullptr;                  // strong reference
  PyObject* dtype_attr = nullptr;                   // interned "dtype"
  std::vector<std::pair<PyObject*, DType>> dtypes;  // strong references
  PyObject* op_codes = nullptr;                     // {name: ReduceOp code}
  bool direct = false;                              // NumpyArrayHead matches this numpy

  ~SyncAllreduce() {
    Py_XDECREF(reinterpret_cast<PyObject*>(ndarray));
    Py_XDECREF(dtype_attr);
    for (auto& d : dtypes) Py_DECREF(d.first);
    Py_XDECREF(op_codes);
  }
};

PyObject* not_accepted() { Py_RETURN_NOTIMPLEMENTED; }

PyObject* sync_allreduce(PyObject* self, PyObject* const* args, Py_ssize_t nargs) {
  auto* f = static_cast<SyncAllreduce*>(PyCapsule_GetPointer(self, kCapsule));
  if (f == nullptr) return nullptr;
  if (nargs != 2) {
    PyErr_SetString(PyExc_TypeError, "sync allreduce takes (array, op)");
    return nullptr;
  }
  PyObject* a = args[0];
  if (!PyObject_TypeCheck(a, f->ndarray)) return not_accepted();
  PyObject* code = PyDict_GetItemWithError(f->op_codes, args[1]);  // borrowed
  if (code == nullptr) {
    PyErr_Clear();  // an unhashable op: the general path explains
    return not_accepted();
  }
  long op = PyLong_AsLong(code);
  if (op == -1 && PyErr_Occurred()) return nullptr;
  void* buf;
  size_t count;
  PyObject* descr;
  if (f->direct) {
    auto* h = reinterpret_cast<const NumpyArrayHead*>(a);
    // Not C contiguous or read-only: the general path says why.
    if ((h->flags & (kNpyCContiguous | kNpyWriteable)) != (kNpyCContiguous | kNpyWriteable)) {
      return not_accepted();
    }
    descr = h->descr;
    buf = h->data;
    count = 1;
    for (int i = 0; i < h->nd; ++i) count *= size_t(h->dimensions[i]);
  } else {
    descr = PyObject_GetAttr(a, f->dtype_attr);
    if (descr == nullptr) return nullptr;
    Py_DECREF(descr);  // the array holds it; only the identity is needed
    Py_buffer view;
    if (PyObject_GetBuffer(a, &view, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE) != 0) {
      PyErr_Clear();  // not C contiguous or read-only: the general path says so
      return not_accepted();
    }
    buf = view.buf;
    count = view.itemsize > 0 ? size_t(view.len / view.itemsize) : 0;
    PyBuffer_Release(&view);  // the caller's reference keeps the array alive during the call
  }
  const std::pair<PyObject*, DType>* dt = nullptr;
  for (const auto& d : f->dtypes) {
    if (d.first == descr) {
      dt = &d;
      break;
    }
  }
  if (dt == nullptr) return not_accepted();
  std::exception_ptr err;
  PyThreadState* ts = PyEval_SaveThread();
  try {
    f->comm->allreduce_sync(buf, count, dt->second, static_cast<ReduceOp>(op));
  } catch (...) {
    err = std::current_exception();
  }
  PyEval_RestoreThread(ts);
  if (err) {
    set_py_error(err);
    return nullptr;
  }
  Py_RETURN_NONE;
}

// True when NumpyArrayHead reads what numpy itself reports, on arrays of several shapes,
// dtypes and layouts (1-d, 2-d, 0-d, a strided view, an empty array).
bool numpy_layout_matches(py::module_& np) {
  py::list probes;
  probes.append(np.attr("arange")(6, py::arg("dtype") = "float32"));
  probes.append(np.attr("zeros")(py::make_tuple(2, 3), py::arg("dtype") = "int64"));
  probes.append(np.attr("array")(5.0));
  probes.append(np.attr("zeros")(py::make_tuple(3, 4))[py::make_tuple(py::slice(0, 3, 1), 1)]);
  probes.append(np.attr("zeros")(0, py::arg("dtype") = "uint8"));
  for (auto a : probes) {
    auto* h = reinterpret_cast<const NumpyArrayHead*>(a.ptr());
    size_t count = 1;
    for (int i = 0; i < h->nd; ++i) count *= size_t(h->dimensions[i]);
    py::tuple data = a.attr("__array_interface__")["data"];
    bool contiguous = a.attr("flags").attr("c_contiguous").cast<bool>();
    bool same = h->nd == a.attr("ndim").cast<int>() && count == a.attr("size").cast<size_t>() &&
                h->descr == a.attr("dtype").ptr() &&
                bool(h->flags & kNpyCContiguous) == contiguous &&
                reinterpret_cast<uintptr_t>(h->data) == data[0].cast<uintptr_t>();
    if (!same) return false;
  }
  return true;
}

PyMethodDef sync_allreduce_def = {
    "sync_allreduce",
    reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)(void)>(sync_allreduce)), METH_FASTCALL,
    "sync_allreduce(array, op): in-place synchronous allreduce; NotImplemented when the array or "
    "op is not one this path takes."};

}  // namespace

void register_fast_allreduce(py::class_<Communicator, std::shared_ptr<Communicator>>& cls) {
  cls.def(
      "sync_allreduce_fn",
      [](std::shared_ptr<Communicator> c, py::dict dtype_codes, py::dict op_codes) {
        auto f = std::make_unique<SyncAllreduce>();
        f->comm = std::move(c);
        py::module_ np = py::module_::import("numpy");
        py::object ndarray = np.attr("ndarray");
        f->direct = numpy_layout_matches(np);
        f->ndarray = reinterpret_cast<PyTypeObject*>(ndarray.release().ptr());
        f->dtype_attr = PyUnicode_InternFromString("dtype");
        for (auto item : dtype_codes) {
          DType dt = dtype_from_int(item.second.cast<int>());  // validates the code
          f->dtypes.emplace_back(item.first.inc_ref().ptr(), dt);
        }
        py::dict ops;
        for (auto item : op_codes) {
          ops[item.first] = int(reduce_op_from_int(item.second.cast<int>()));
        }
        f->op_codes = ops.release().ptr();
        py::capsule cap(f.get(), kCapsule, [](PyObject* o) {
          delete static_cast<SyncAllreduce*>(PyCapsule_GetPointer(o, kCapsule));
        });
        f.release();
        PyObject* fn = PyCFunction_New(&sync_allreduce_def, cap.ptr());
        if (fn == nullptr) throw py::error_already_set();
        return py::reinterpret_steal<py::object>(fn);
      },
      py::arg("dtype_codes"), py::arg("op_codes"),
      "A builtin fn(array, op) running synchronous allreduces on this communicator with the "
      "fewest checks (see fast_allreduce.cc); it keeps the communicator alive.");
}

}  // namespace gw
