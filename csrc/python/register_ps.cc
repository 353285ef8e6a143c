// Binds the parameter server (gradwire._C.ps): Server, Client and Future. Buffers arrive as raw
// addresses of contiguous float32 / int64 tensors that the Python layer keeps alive until the
// future completes; every call that may block releases the GIL.
#include <pybind11/stl.h>

#include "gradwire/common/config.h"
#include "gradwire/ps/client.h"
#include "gradwire/ps/server.h"
#include "py_common.h"

namespace gw {
namespace {

using ps::Client;
using ps::PsFuture;

float* fptr(uintptr_t p) { return reinterpret_cast<float*>(p); }
const int64_t* iptr(uintptr_t p) { return reinterpret_cast<const int64_t*>(p); }

ps::OptSpec opt_spec(int kind, double lr, double momentum, double eps, double beta1, double beta2) {
  ps::OptSpec o;
  o.kind = ps::OptKind(kind);
  o.lr = lr;
  o.momentum = momentum;
  o.eps = eps;
  o.beta1 = beta1;
  o.beta2 = beta2;
  return o;
}

}  // namespace

void register_ps(py::module_& m) {
  py::module_ ps = m.def_submodule("ps", "parameter server core");

  py::class_<PsFuture, std::shared_ptr<PsFuture>>(ps, "Future")
      .def("wait", &PsFuture::wait, py::call_guard<py::gil_scoped_release>(),
           "Block until every server answered; raise the first error.")
      .def("done", &PsFuture::done)
      .def_property_readonly("description", &PsFuture::description)
      .def_property_readonly("remote_access", &PsFuture::remote_access,
                             "A same-host server was given references to the caller's tensors.");

  py::class_<ps::Server>(ps, "Server")
      .def(py::init([](int shard_id, int num_servers, int num_workers, const std::string& mode,
                       uint64_t staleness, const std::string& host, int port,
                       const std::string& checkpoint_dir, double checkpoint_every, int threads,
                       uint64_t block_elems, bool insecure) {
             ps::ServerOptions o;
             o.shard.shard_id = shard_id;
             o.shard.num_servers = num_servers;
             o.shard.num_workers = num_workers;
             o.shard.mode = ps::parse_mode(mode);
             o.shard.staleness = staleness;
             o.shard.block_elems = block_elems;
             o.host = host;
             o.port = port;
             o.checkpoint_dir = checkpoint_dir;
             o.checkpoint_every = checkpoint_every;
             o.threads = threads;
             o.insecure = insecure;
             py::gil_scoped_release nogil;
             return std::make_unique<ps::Server>(o);
           }),
           py::arg("shard_id"), py::arg("num_servers"), py::arg("num_workers"), py::arg("mode"),
           py::arg("staleness"), py::arg("host"), py::arg("port"), py::arg("checkpoint_dir"),
           py::arg("checkpoint_every"), py::arg("threads"), py::arg("block_elems"),
           py::arg("insecure") = false)
      .def_property_readonly("address", &ps::Server::address)
      .def_property_readonly("access", &ps::Server::access,
                             "Who may connect: token, loopback only, or anyone (--insecure).")
      .def("checkpoint", &ps::Server::checkpoint, py::call_guard<py::gil_scoped_release>())
      .def("stop", &ps::Server::stop, py::call_guard<py::gil_scoped_release>());

  py::class_<Client, std::shared_ptr<Client>>(ps, "Client")
      .def(py::init([](std::vector<std::string> servers, int worker_id, int num_workers,
                       double timeout) {
             ps::ClientOptions o{std::move(servers), worker_id, num_workers, timeout};
             py::gil_scoped_release nogil;
             return std::make_shared<Client>(o);
           }),
           py::arg("servers"), py::arg("worker_id"), py::arg("num_workers"), py::arg("timeout"))
      .def(
          "register_dense",
          [](Client& c, const std::string& name, std::vector<int64_t> shape, uintptr_t init,
             int kind, double lr, double momentum, double eps, double b1, double b2,
             const std::string& codec) {
            return c.register_dense(name, shape, fptr(init),
                                    opt_spec(kind, lr, momentum, eps, b1, b2), codec);
          },
          py::call_guard<py::gil_scoped_release>())
      .def(
          "push",
          [](Client& c, const std::string& name, uintptr_t g, uint64_t n) {
            return c.push(name, fptr(g), n);
          },
          py::call_guard<py::gil_scoped_release>())
      .def(
          "pull",
          [](Client& c, const std::string& name, uintptr_t out, uint64_t n) {
            return c.pull(name, fptr(out), n);
          },
          py::call_guard<py::gil_scoped_release>())
      .def(
          "push_pull",
          [](Client& c, const std::string& name, uintptr_t g, uintptr_t out, uint64_t n) {
            return c.push_pull(name, fptr(g), fptr(out), n);
          },
          py::call_guard<py::gil_scoped_release>())
      .def(
          "register_sparse",
          [](Client& c, const std::string& table, int64_t num_rows, uint32_t dim, int init_kind,
             double a, double b, uint64_t seed, int kind, double lr, double momentum, double eps,
             double b1, double b2) {
            ps::InitSpec init;
            init.kind = ps::InitKind(init_kind);
            init.a = a;
            init.b = b;
            init.seed = seed;
            return c.register_sparse(table, num_rows, dim, init,
                                     opt_spec(kind, lr, momentum, eps, b1, b2));
          },
          py::call_guard<py::gil_scoped_release>())
      .def(
          "pull_rows",
          [](Client& c, const std::string& table, uintptr_t ids, uint64_t n, uintptr_t out) {
            return c.pull_rows(table, iptr(ids), n, fptr(out));
          },
          py::call_guard<py::gil_scoped_release>())
      .def(
          "push_rows",
          [](Client& c, const std::string& table, uintptr_t ids, uint64_t n, uintptr_t g) {
            return c.push_rows(table, iptr(ids), n, fptr(g));
          },
          py::call_guard<py::gil_scoped_release>())
      .def("clock", &Client::clock, py::call_guard<py::gil_scoped_release>())
      .def("checkpoint", &Client::checkpoint, py::arg("collective") = false,
           py::call_guard<py::gil_scoped_release>())
      .def("close", &Client::close, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("current_clock", &Client::current_clock)
      .def_property_readonly("max_observed_staleness", &Client::max_observed_staleness)
      .def_property_readonly("num_servers", &Client::num_servers)
      .def_property_readonly("single_copy_bytes", &Client::single_copy_bytes)
      .def_property_readonly("in_place_bytes", &Client::in_place_bytes)
      .def_property_readonly("push_wire_bytes", &Client::push_wire_bytes)
      .def_property_readonly("push_dense_bytes", &Client::push_dense_bytes)
      .def("residual_keys", [](Client& c) { return c.residuals().keys(); })
      .def("residual_get",
           [](Client& c, const std::string& key) { return residual_to_bytes(c.residuals(), key); })
      .def("residual_set", [](Client& c, const std::string& key,
                              py::bytes data) { residual_from_bytes(c.residuals(), key, data); })
      .def("residual_clear", [](Client& c) { c.residuals().clear(); })
      .def_property_readonly("worker_id", &Client::worker_id);

  ps.def("default_block_elems", [] { return Config::get().ps_block_elems; });
  ps.def("default_timeout", [] { return Config::get().ps_timeout_seconds; });
}

}  // namespace gw
