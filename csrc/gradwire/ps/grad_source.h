// Where a dense push's gradient comes from as the shard state applies it: a buffer (the
// request's data), or (same host, ps/single_copy.h) the worker's tensor, read piece by piece
// right before the update consumes it. The state asks for consecutive pieces, in order.
#pragma once

#include <cstddef>

namespace gw {
namespace ps {

class GradSource {
 public:
  virtual ~GradSource() = default;
  virtual size_t elems() const = 0;
  // Elements [off, off + n), where off is where the previous piece ended; the pointer stays
  // valid until the next call. Throws when the gradient cannot be read.
  virtual const float* piece(size_t off, size_t n) = 0;
};

class BufferSource final : public GradSource {
 public:
  BufferSource(const float* p, size_t n) : p_(p), n_(n) {}
  size_t elems() const override { return n_; }
  const float* piece(size_t off, size_t) override { return p_ + off; }

 private:
  const float* p_;
  size_t n_;
};

}  // namespace ps
}  // namespace gw
