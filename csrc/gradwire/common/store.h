// Rendezvous key-value store. The torch backend adapts torch's c10d Store (TCPStore, FileStore,
// HashStore) to this interface, so the core never depends on torch.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace gw {

class Store {
 public:
  virtual ~Store() = default;
  virtual void set(const std::string& key, const std::string& value) = 0;
  // Blocks until the key exists (bounded by the store's own timeout).
  virtual std::string get(const std::string& key) = 0;
  virtual int64_t add(const std::string& key, int64_t delta) = 0;
};

}  // namespace gw
