// Binds Communicator and Work. A buffer arrives as a raw address (torch tensors: data_ptr()) or as
// any object with the buffer protocol (numpy arrays); the Python layer validated it and keeps its
// owner alive until the Work completes. Every call that may block releases the GIL.
#include <pybind11/stl.h>

#include "gradwire/common/dtype.h"
#include "gradwire/common/logging.h"
#include "gradwire/engine/communicator.h"
#include "py_common.h"

namespace gw {

std::unique_ptr<Store> make_py_store(py::object store);

namespace {

// Address of an int or of a contiguous buffer; needs the GIL, so callers take it before
// submit_op(). Reading the address here costs ~0.1 us; numpy's `a.ctypes.data` costs ~2.5 us (it
// imports ctypes and builds an object on every call).
void* ptr(py::handle buf) {
  if (PyLong_Check(buf.ptr())) return reinterpret_cast<void*>(buf.cast<uintptr_t>());
  Py_buffer view;
  if (PyObject_GetBuffer(buf.ptr(), &view, PyBUF_ANY_CONTIGUOUS) != 0)
    throw py::error_already_set();
  void* p = view.buf;
  PyBuffer_Release(&view);
  return p;
}

// Python 3.13 made the check public (and removed the underscored name).
bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing();
#else
  return _Py_IsFinalizing();
#endif
}

}  // namespace

// Runs `fn(exception_or_None)` with the GIL on the thread that completes the op. The Python
// function object is released under the GIL too, unless the interpreter is already going away.
Work::Callback wrap_callback(py::object fn) {
  if (fn.is_none()) return nullptr;
  std::shared_ptr<py::object> holder(new py::object(std::move(fn)), [](py::object* o) {
    if (!Py_IsInitialized() || interpreter_finalizing()) return;  // leak rather than crash at exit
    py::gil_scoped_acquire gil;
    delete o;
  });
  return [holder](Work& w) {
    if (!Py_IsInitialized() || interpreter_finalizing()) return;
    py::gil_scoped_acquire gil;
    try {
      std::exception_ptr err = w.error();
      (*holder)(err ? to_py_exception(err) : py::object(py::none()));
    } catch (py::error_already_set& e) {
      GW_LOG(kError, "completion callback of ", w.description(), " raised: ", e.what());
    }
  };
}

void register_engine(py::module_& m) {
  py::class_<Work, std::shared_ptr<Work>>(m, "Work")
      .def("is_completed", &Work::is_completed)
      .def("wait", &Work::wait, py::call_guard<py::gil_scoped_release>(),
           "Block until the op completed; raise its error if it failed.")
      .def("exception",
           [](const Work& w) -> py::object {
             auto e = w.error();
             return e ? to_py_exception(e) : py::none();
           })
      .def_property_readonly("description", &Work::description)
      .def_property_readonly("source_rank", &Work::source_rank,
                             "The sender of a receive from any source (-1 until it matched).");

  using C = Communicator;
  py::class_<C, std::shared_ptr<C>> cls(m, "Communicator");
  cls.def(py::init([](py::object store, int rank, int size, const std::string& name, double timeout,
                      const std::string& route_hint, const std::string& listen_host) {
            auto s = make_py_store(std::move(store));
            CommOptions opts;
            opts.name = name;
            opts.timeout_seconds = timeout;
            opts.route_hint = route_hint;
            opts.listen_host = listen_host;
            py::gil_scoped_release nogil;
            return std::make_shared<C>(*s, rank, size, opts);
          }),
          py::arg("store"), py::arg("rank"), py::arg("size"), py::arg("name") = "default",
          py::arg("timeout") = 1800.0, py::arg("route_hint") = "", py::arg("listen_host") = "")
      .def_property_readonly("rank", &C::rank)
      .def_property_readonly("size", &C::size)
      .def_property_readonly("name", &C::name)
      .def_property_readonly("id", &C::id)
      .def_property_readonly("listen_address", &C::listen_address)
      .def_property_readonly("channel_kinds", &C::channel_kinds)
      .def_property("timeout", &C::timeout, &C::set_timeout)
      .def("on_executor_thread", &C::on_executor_thread)
      .def("executing_here", &C::executing_here)
      .def("allreduce",
           [](C& c, py::handle buf, size_t n, int dt, int op, py::object cb, bool inline_ok) {
             void* buf_addr = ptr(buf);
             return submit_op(cb, inline_ok, [&](Work::Callback k) {
               return c.allreduce(buf_addr, n, dtype_from_int(dt), reduce_op_from_int(op), k,
                                  inline_ok);
             });
           })
      .def("broadcast",
           [](C& c, py::handle buf, size_t n, int dt, int root, py::object cb, bool inline_ok) {
             void* buf_addr = ptr(buf);
             return submit_op(cb, inline_ok, [&](Work::Callback k) {
               return c.broadcast(buf_addr, n, dtype_from_int(dt), root, k, inline_ok);
             });
           })
      .def("reduce",
           [](C& c, py::handle buf, size_t n, int dt, int op, int root, py::object cb,
              bool inline_ok) {
             void* buf_addr = ptr(buf);
             return submit_op(cb, inline_ok, [&](Work::Callback k) {
               return c.reduce(buf_addr, n, dtype_from_int(dt), reduce_op_from_int(op), root, k,
                               inline_ok);
             });
           })
      .def(
          "allgather",
          [](C& c, py::handle in, py::handle out, size_t n, int dt, py::object cb, bool inline_ok) {
            void* in_addr = ptr(in);
            void* out_addr = ptr(out);
            return submit_op(cb, inline_ok, [&](Work::Callback k) {
              return c.allgather(in_addr, out_addr, n, dtype_from_int(dt), k, inline_ok);
            });
          })
      .def("reduce_scatter",
           [](C& c, py::handle in, py::handle out, size_t n, int dt, int op, py::object cb,
              bool inline_ok) {
             void* in_addr = ptr(in);
             void* out_addr = ptr(out);
             return submit_op(cb, inline_ok, [&](Work::Callback k) {
               return c.reduce_scatter(in_addr, out_addr, n, dtype_from_int(dt),
                                       reduce_op_from_int(op), k, inline_ok);
             });
           })
      .def("alltoall",
           [](C& c, py::handle in, py::handle out, std::vector<size_t> sc, std::vector<size_t> rc,
              int dt, py::object cb, bool inline_ok) {
             void* in_addr = ptr(in);
             void* out_addr = ptr(out);
             return submit_op(cb, inline_ok, [&](Work::Callback k) {
               return c.alltoall(in_addr, out_addr, sc, rc, dtype_from_int(dt), k, inline_ok);
             });
           })
      .def("gather",
           [](C& c, py::handle in, py::handle out, size_t n, int dt, int root, py::object cb,
              bool inline_ok) {
             void* in_addr = ptr(in);
             void* out_addr = ptr(out);
             return submit_op(cb, inline_ok, [&](Work::Callback k) {
               return c.gather(in_addr, out_addr, n, dtype_from_int(dt), root, k, inline_ok);
             });
           })
      .def("scatter",
           [](C& c, py::handle in, py::handle out, size_t n, int dt, int root, py::object cb,
              bool inline_ok) {
             void* in_addr = ptr(in);
             void* out_addr = ptr(out);
             return submit_op(cb, inline_ok, [&](Work::Callback k) {
               return c.scatter(in_addr, out_addr, n, dtype_from_int(dt), root, k, inline_ok);
             });
           })
      .def("barrier",
           [](C& c, py::object cb, bool inline_ok) {
             return submit_op(cb, inline_ok,
                              [&](Work::Callback k) { return c.barrier(k, inline_ok); });
           })
      .def("send",
           [](C& c, py::handle buf, size_t n, int dt, int peer, uint32_t tag, py::object cb,
              bool inline_ok) {
             void* buf_addr = ptr(buf);
             return submit_op(cb, inline_ok, [&](Work::Callback k) {
               return c.send(buf_addr, n, dtype_from_int(dt), peer, tag, k, inline_ok);
             });
           })
      .def("recv",
           [](C& c, py::handle buf, size_t n, int dt, int peer, uint32_t tag, py::object cb,
              bool inline_ok) {
             void* buf_addr = ptr(buf);
             return submit_op(cb, inline_ok, [&](Work::Callback k) {
               return c.recv(buf_addr, n, dtype_from_int(dt), peer, tag, k, inline_ok);
             });
           })
      .def("shutdown", &C::shutdown, py::call_guard<py::gil_scoped_release>())
      .def("abort", &C::abort, py::call_guard<py::gil_scoped_release>())
      .def("stats", [](const C& c) {
        CommStats s = c.stats();
        py::dict d;
        d["ops_completed"] = s.ops_completed;
        d["ops_failed"] = s.ops_failed;
        d["ops_inline"] = s.ops_inline;
        d["bytes_sent"] = s.bytes_sent;
        d["bytes_received"] = s.bytes_received;
        d["bytes_single_copy"] = s.bytes_single_copy;
        d["mailbox_messages"] = s.mailbox_messages;
        d["compressed_ops"] = s.compressed_ops;
        d["compressed_raw_bytes"] = s.compressed_raw_bytes;
        d["compressed_wire_bytes"] = s.compressed_wire_bytes;
        return d;
      });
  register_fast_allreduce(cls);
}

}  // namespace gw
