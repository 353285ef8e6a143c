// Where a dense read's value goes as the shard state produces it: into a reply buffer, or (same
// host, ps/single_copy.h) straight into the worker's tensor. The state calls begin() once with
// the value's size, then put() with consecutive pieces, in order, covering it exactly.
#pragma once

#include <cstddef>
#include <cstring>

#include "gradwire/ps/messages.h"

namespace gw {
namespace ps {

class ValueSink {
 public:
  virtual ~ValueSink() = default;
  virtual void begin(size_t bytes) = 0;
  virtual void put(const void* p, size_t n) = 0;
};

// Collects the value in a reply buffer.
class BytesSink final : public ValueSink {
 public:
  explicit BytesSink(Bytes* out) : out_(out) {}
  void begin(size_t bytes) override {
    out_->resize(bytes);
    pos_ = 0;
  }
  void put(const void* p, size_t n) override {
    memcpy(out_->data() + pos_, p, n);
    pos_ += n;
  }

 private:
  Bytes* out_;
  size_t pos_ = 0;
};

}  // namespace ps
}  // namespace gw
