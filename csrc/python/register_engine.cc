// Binds Communicator and Work. A buffer arrives as a raw address (torch tensors: data_ptr(); the
// backend keeps them alive) or as any object with the buffer protocol (numpy arrays), which is
// checked here and referenced until the Work completes (op_buffer). Every call that may block
// releases the GIL.
#include <pybind11/stl.h>

#include "gradwire/common/dtype.h"
#include "gradwire/common/logging.h"
#include "gradwire/engine/communicator.h"
#include "py_common.h"

namespace gw {

std::unique_ptr<Store> make_py_store(py::object store);

namespace {

// A buffer an op reads or writes. An int is an address whose memory the caller keeps valid
// until the op completes (the torch backend holds its tensors). Any other object goes through
// the buffer protocol: it must be contiguous, writable when the op writes into it, and hold at
// least `count` elements of `dt`; the op then references it until it completes (OpBuffer::owner,
// passed to submit_op). None stands for "no buffer" where an op needs none (count 0).
// Reading the address here costs ~0.1 us; numpy's `a.ctypes.data` costs ~2.5 us (it imports
// ctypes and builds an object on every call).
struct OpBuffer {
  void* addr = nullptr;
  py::object owner;  // the object whose memory the op uses; unset for an address or None
};

OpBuffer op_buffer(const Communicator& c, py::handle obj, size_t count, DType dt, bool writes,
                   const char* what) {
  if (PyLong_Check(obj.ptr())) return {reinterpret_cast<void*>(obj.cast<uintptr_t>()), {}};
  size_t need = count * dtype_size(dt);
  if (obj.is_none() && need == 0) return {};
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_ANY_CONTIGUOUS) != 0) {
    PyErr_Clear();
    GW_THROW(InvalidArgument, "rank ", c.rank(), ": the ", what, " (",
             std::string(py::str(py::type::of(obj).attr("__name__"))),
             ") is not a contiguous buffer");
  }
  void* addr = view.buf;
  size_t len = size_t(view.len);
  bool readonly = view.readonly != 0;
  PyBuffer_Release(&view);
  GW_CHECK_ARG(!(writes && readonly), "rank ", c.rank(), ": the ", what,
               " is read-only, but the op writes its result into it");
  GW_CHECK_ARG(len >= need, "rank ", c.rank(), ": the ", what, " holds ", len,
               " bytes, but the op needs ", need, " (", count, " x ", dtype_name(dt), ")");
  return {addr, py::reinterpret_borrow<py::object>(obj)};
}

// The owners to keep until completion.
std::vector<py::object> owners(std::initializer_list<const OpBuffer*> bufs) {
  std::vector<py::object> out;
  for (const OpBuffer* b : bufs) {
    if (b->owner) out.push_back(b->owner);
  }
  return out;
}

size_t total(const std::vector<size_t>& counts) {
  size_t n = 0;
  for (size_t c : counts) n += c;
  return n;
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
Work::Callback wrap_callback(py::object fn, std::vector<py::object> owners) {
  if (fn.is_none() && owners.empty()) return nullptr;
  struct Held {
    py::object fn;
    std::vector<py::object> owners;
  };
  std::shared_ptr<Held> held(new Held{std::move(fn), std::move(owners)}, [](Held* h) {
    if (!Py_IsInitialized() || interpreter_finalizing()) return;  // leak rather than crash at exit
    py::gil_scoped_acquire gil;
    delete h;
  });
  return [held](Work& w) {
    if (held->fn.is_none()) return;  // only keeps the buffers alive
    if (!Py_IsInitialized() || interpreter_finalizing()) return;
    py::gil_scoped_acquire gil;
    try {
      std::exception_ptr err = w.error();
      held->fn(err ? to_py_exception(err) : py::object(py::none()));
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
            // Destroying a communicator joins its executor, which may need the GIL for the
            // callbacks of ops still queued: the last reference, when Python drops it, is
            // dropped without the GIL.
            return std::shared_ptr<C>(new C(*s, rank, size, opts), [](C* c) {
              if (Py_IsInitialized() && !interpreter_finalizing() && PyGILState_Check()) {
                py::gil_scoped_release nogil;
                delete c;
              } else {
                delete c;
              }
            });
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
             DType t = dtype_from_int(dt);
             OpBuffer b = op_buffer(c, buf, n, t, true, "allreduce buffer");
             return submit_op(
                 cb, inline_ok,
                 [&](Work::Callback k) {
                   return c.allreduce(b.addr, n, t, reduce_op_from_int(op), k, inline_ok);
                 },
                 owners({&b}));
           })
      .def("broadcast",
           [](C& c, py::handle buf, size_t n, int dt, int root, py::object cb, bool inline_ok) {
             DType t = dtype_from_int(dt);
             OpBuffer b = op_buffer(c, buf, n, t, c.rank() != root, "broadcast buffer");
             return submit_op(
                 cb, inline_ok,
                 [&](Work::Callback k) { return c.broadcast(b.addr, n, t, root, k, inline_ok); },
                 owners({&b}));
           })
      .def("reduce",
           [](C& c, py::handle buf, size_t n, int dt, int op, int root, py::object cb,
              bool inline_ok) {
             DType t = dtype_from_int(dt);
             // Every rank's buffer may hold partial results on their way to the root.
             OpBuffer b = op_buffer(c, buf, n, t, true, "reduce buffer");
             return submit_op(
                 cb, inline_ok,
                 [&](Work::Callback k) {
                   return c.reduce(b.addr, n, t, reduce_op_from_int(op), root, k, inline_ok);
                 },
                 owners({&b}));
           })
      .def(
          "allgather",
          [](C& c, py::handle in, py::handle out, size_t n, int dt, py::object cb, bool inline_ok) {
            DType t = dtype_from_int(dt);
            OpBuffer i = op_buffer(c, in, n, t, false, "allgather input");
            OpBuffer o = op_buffer(c, out, n * size_t(c.size()), t, true, "allgather output");
            return submit_op(
                cb, inline_ok,
                [&](Work::Callback k) { return c.allgather(i.addr, o.addr, n, t, k, inline_ok); },
                owners({&i, &o}));
          })
      .def("reduce_scatter",
           [](C& c, py::handle in, py::handle out, size_t n, int dt, int op, py::object cb,
              bool inline_ok) {
             DType t = dtype_from_int(dt);
             OpBuffer i = op_buffer(c, in, n * size_t(c.size()), t, false, "reduce_scatter input");
             OpBuffer o = op_buffer(c, out, n, t, true, "reduce_scatter output");
             return submit_op(
                 cb, inline_ok,
                 [&](Work::Callback k) {
                   return c.reduce_scatter(i.addr, o.addr, n, t, reduce_op_from_int(op), k,
                                           inline_ok);
                 },
                 owners({&i, &o}));
           })
      .def("alltoall",
           [](C& c, py::handle in, py::handle out, std::vector<size_t> sc, std::vector<size_t> rc,
              int dt, py::object cb, bool inline_ok) {
             DType t = dtype_from_int(dt);
             OpBuffer i = op_buffer(c, in, total(sc), t, false, "alltoall input");
             OpBuffer o = op_buffer(c, out, total(rc), t, true, "alltoall output");
             return submit_op(
                 cb, inline_ok,
                 [&](Work::Callback k) {
                   return c.alltoall(i.addr, o.addr, sc, rc, t, k, inline_ok);
                 },
                 owners({&i, &o}));
           })
      .def("gather",
           [](C& c, py::handle in, py::handle out, size_t n, int dt, int root, py::object cb,
              bool inline_ok) {
             DType t = dtype_from_int(dt);
             size_t out_n = c.rank() == root ? n * size_t(c.size()) : 0;
             OpBuffer i = op_buffer(c, in, n, t, false, "gather input");
             OpBuffer o = op_buffer(c, out, out_n, t, true, "gather output");
             return submit_op(
                 cb, inline_ok,
                 [&](Work::Callback k) {
                   return c.gather(i.addr, o.addr, n, t, root, k, inline_ok);
                 },
                 owners({&i, &o}));
           })
      .def("scatter",
           [](C& c, py::handle in, py::handle out, size_t n, int dt, int root, py::object cb,
              bool inline_ok) {
             DType t = dtype_from_int(dt);
             size_t in_n = c.rank() == root ? n * size_t(c.size()) : 0;
             OpBuffer i = op_buffer(c, in, in_n, t, false, "scatter input");
             OpBuffer o = op_buffer(c, out, n, t, true, "scatter output");
             return submit_op(
                 cb, inline_ok,
                 [&](Work::Callback k) {
                   return c.scatter(i.addr, o.addr, n, t, root, k, inline_ok);
                 },
                 owners({&i, &o}));
           })
      .def("barrier",
           [](C& c, py::object cb, bool inline_ok) {
             return submit_op(cb, inline_ok,
                              [&](Work::Callback k) { return c.barrier(k, inline_ok); });
           })
      .def("send",
           [](C& c, py::handle buf, size_t n, int dt, int peer, uint32_t tag, py::object cb,
              bool inline_ok) {
             DType t = dtype_from_int(dt);
             OpBuffer b = op_buffer(c, buf, n, t, false, "send buffer");
             return submit_op(
                 cb, inline_ok,
                 [&](Work::Callback k) { return c.send(b.addr, n, t, peer, tag, k, inline_ok); },
                 owners({&b}));
           })
      .def("recv",
           [](C& c, py::handle buf, size_t n, int dt, int peer, uint32_t tag, py::object cb,
              bool inline_ok) {
             DType t = dtype_from_int(dt);
             OpBuffer b = op_buffer(c, buf, n, t, true, "recv buffer");
             return submit_op(
                 cb, inline_ok,
                 [&](Work::Callback k) { return c.recv(b.addr, n, t, peer, tag, k, inline_ok); },
                 owners({&b}));
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
