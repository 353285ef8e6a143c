// gradwire._C: the only translation unit family that includes pybind11. This file only assembles
// the parts; each register_*.cc binds one area.
#include "py_common.h"

PYBIND11_MODULE(_C, m) {
  m.doc() = "gradwire native core";
  gw::register_errors(m);
  gw::register_store(m);
  gw::register_engine(m);
  gw::register_kernels(m);
  gw::register_protocol(m);
  gw::register_compress(m);
}
