// Binds the codecs (CodecSpec, encode/decode for tests and tools), the compressed collectives of
// a Communicator, and its error-feedback residuals. Buffers arrive as raw addresses of float32
// memory that the Python layer keeps alive until the Work completes.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <vector>

#include "gradwire/common/error.h"
#include "gradwire/compress/codec.h"
#include "gradwire/engine/communicator.h"
#include "py_common.h"

namespace gw {
namespace {

float* fptr(uintptr_t p) { return reinterpret_cast<float*>(p); }

const char* kind_name(CodecKind k) {
  switch (k) {
    case CodecKind::kNone:
      return "none";
    case CodecKind::kFp16:
      return "fp16";
    case CodecKind::kBf16:
      return "bf16";
    case CodecKind::kInt8:
      return "int8";
    case CodecKind::kInt4:
      return "int4";
    case CodecKind::kSign:
      return "sign";
    case CodecKind::kQsgd:
      return "qsgd";
    case CodecKind::kTopk:
      return "topk";
    case CodecKind::kRandomk:
      return "randomk";
    case CodecKind::kThreshold:
      return "threshold";
  }
  return "unknown";
}

double seconds_of(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Times memcpy, encode and decode of `count` floats, interleaved rep by rep so that machine load
// hits all three alike; returns the seconds of every repetition.
py::dict codec_throughput(const CodecSpec& spec, size_t count, int reps) {
  GW_CHECK_ARG(reps >= 1, "reps must be >= 1, got ", reps);
  std::vector<float> x(count), copy(count), back(count);
  for (size_t i = 0; i < count; ++i) x[i] = float((i * 2654435761u) % 2001) / 1000.0f - 1.0f;
  std::vector<uint8_t> enc(encoded_bytes(spec, count));
  std::vector<double> t_copy, t_enc, t_dec;
  size_t used = 0;
  {
    py::gil_scoped_release nogil;
    for (int r = -1; r < reps; ++r) {  // r = -1 warms up
      double c = seconds_of([&] { memcpy(copy.data(), x.data(), count * 4); });
      double e =
          seconds_of([&] { used = encode(spec, x.data(), count, enc.data(), uint64_t(r), 0); });
      double d = seconds_of([&] { decode(spec, enc.data(), count, back.data(), 0, false); });
      if (r < 0) continue;
      t_copy.push_back(c);
      t_enc.push_back(e);
      t_dec.push_back(d);
    }
  }
  py::dict out;
  out["memcpy"] = t_copy;
  out["encode"] = t_enc;
  out["decode"] = t_dec;
  out["encoded_bytes"] = used;
  return out;
}

}  // namespace

py::bytes residual_to_bytes(const ResidualStore& store, const std::string& key) {
  std::vector<float> r = store.get(key);
  return py::bytes(reinterpret_cast<const char*>(r.data()), r.size() * 4);
}

void residual_from_bytes(ResidualStore& store, const std::string& key, const py::bytes& data) {
  std::string d = data;
  GW_CHECK_ARG(d.size() % 4 == 0, "residual '", key, "' must hold float32 values, got ", d.size(),
               " bytes");
  std::vector<float> r(d.size() / 4);
  if (!r.empty()) memcpy(r.data(), d.data(), d.size());
  store.set(key, std::move(r));
}

void register_compress(py::module_& m) {
  py::class_<CodecSpec>(m, "CodecSpec")
      .def_static("parse", &CodecSpec::parse, py::arg("spec"))
      .def_property_readonly("name", &CodecSpec::name)
      .def_property_readonly("kind", [](const CodecSpec& c) { return kind_name(c.kind); })
      .def_property_readonly("lossy", &CodecSpec::lossy)
      .def_property_readonly("quantized", &CodecSpec::quantized)
      .def_property_readonly("variable_size", &CodecSpec::variable_size)
      .def_readonly("stochastic", &CodecSpec::stochastic)
      .def_readonly("sampled", &CodecSpec::sampled)
      .def_readonly("levels", &CodecSpec::levels)
      .def_readonly("ratio", &CodecSpec::ratio)
      .def_readonly("threshold", &CodecSpec::threshold)
      .def_readwrite("error_feedback", &CodecSpec::error_feedback)
      .def("encoded_bytes", [](const CodecSpec& c, size_t n) { return encoded_bytes(c, n); })
      .def("keep_count", [](const CodecSpec& c, size_t n) { return codec_keep_count(c, n); })
      .def(
          "encode",
          [](const CodecSpec& c, uintptr_t x, size_t n, uint64_t seed, uint64_t base) {
            std::string out(encoded_bytes(c, n), '\0');
            size_t used;
            {
              py::gil_scoped_release nogil;
              used = encode(c, fptr(x), n, out.data(), seed, base);
            }
            out.resize(used);
            return py::bytes(out);
          },
          py::arg("ptr"), py::arg("count"), py::arg("seed") = 0, py::arg("index_base") = 0)
      .def(
          "decode",
          [](const CodecSpec& c, py::bytes data, size_t n, uintptr_t out, uint64_t seed,
             bool accumulate) {
            std::string d = data;
            if (!c.variable_size() && c.kind != CodecKind::kTopk) {
              GW_CHECK_ARG(d.size() == encoded_bytes(c, n), "codec ", c.name(), ": ", d.size(),
                           " encoded bytes do not hold ", n, " elements (expected ",
                           encoded_bytes(c, n), ")");
            }
            py::gil_scoped_release nogil;
            decode(c, d.data(), n, fptr(out), seed, accumulate);
          },
          py::arg("data"), py::arg("count"), py::arg("out"), py::arg("seed") = 0,
          py::arg("accumulate") = false)
      .def("__repr__", [](const CodecSpec& c) { return "CodecSpec('" + c.name() + "')"; });

  m.def("codec_throughput", &codec_throughput, py::arg("spec"), py::arg("count"),
        py::arg("reps") = 20, "Seconds per repetition of memcpy, encode and decode (benchmarks).");

  // The compressed collectives and residuals of a Communicator, as functions taking it.
  using C = Communicator;
  m.def("compressed_allreduce",
        [](C& c, uintptr_t buf, size_t n, const CodecSpec& spec, const std::string& key,
           bool average, py::object cb, bool inline_ok) {
          return submit_op(cb, inline_ok, [&](Work::Callback k) {
            return c.compressed_allreduce(fptr(buf), n, spec, key, average, k, inline_ok);
          });
        });
  m.def("compressed_reduce_scatter", [](C& c, uintptr_t in, uintptr_t out, size_t n,
                                        const CodecSpec& spec, const std::string& key, bool average,
                                        py::object cb, bool inline_ok) {
    return submit_op(cb, inline_ok, [&](Work::Callback k) {
      return c.compressed_reduce_scatter(fptr(in), fptr(out), n, spec, key, average, k, inline_ok);
    });
  });
  m.def("compressed_allgather",
        [](C& c, uintptr_t in, uintptr_t out, size_t n, const CodecSpec& spec,
           const std::string& key, py::object cb, bool inline_ok) {
          return submit_op(cb, inline_ok, [&](Work::Callback k) {
            return c.compressed_allgather(fptr(in), fptr(out), n, spec, key, k, inline_ok);
          });
        });
  m.def("residual_keys", [](C& c) { return c.residuals().keys(); });
  m.def("residual_get",
        [](C& c, const std::string& key) { return residual_to_bytes(c.residuals(), key); });
  m.def("residual_set", [](C& c, const std::string& key, py::bytes data) {
    residual_from_bytes(c.residuals(), key, data);
  });
  m.def("residual_erase", [](C& c, const std::string& key) { c.residuals().erase(key); });
  m.def("residual_clear", [](C& c) { c.residuals().clear(); });
  m.def("residual_squared_norm",
        [](C& c, const std::string& key) { return c.residuals().squared_norm(key); });
  m.def("residual_input_squared_norm",
        [](C& c, const std::string& key) { return c.residuals().input_squared_norm(key); });
}

}  // namespace gw
