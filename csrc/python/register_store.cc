// Adapts any Python object with set/get/add (torch's c10d Store and its subclasses) to gw::Store.
#include <pybind11/stl.h>

#include "gradwire/common/store.h"
#include "py_common.h"

namespace gw {
namespace {

class PyStore : public Store {
 public:
  explicit PyStore(py::object store) : store_(std::move(store)) {}
  void set(const std::string& key, const std::string& value) override {
    py::gil_scoped_acquire gil;
    store_.attr("set")(key, py::bytes(value));
  }
  std::string get(const std::string& key) override {
    py::gil_scoped_acquire gil;
    return store_.attr("get")(key).cast<std::string>();
  }
  int64_t add(const std::string& key, int64_t delta) override {
    py::gil_scoped_acquire gil;
    return store_.attr("add")(key, delta).cast<int64_t>();
  }

 private:
  py::object store_;
};

}  // namespace

std::unique_ptr<Store> make_py_store(py::object store) {
  return std::make_unique<PyStore>(std::move(store));
}

void register_store(py::module_& m) { (void)m; }

}  // namespace gw
