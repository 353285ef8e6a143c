// Single-producer single-consumer byte ring in shared memory. `head` counts bytes ever written
// (producer-owned), `tail` bytes ever read (consumer-owned); both only grow, so head - tail is
// the fill level and no slot is ambiguous. Data is published with a release store of head and
// consumed after an acquire load, and space is returned the same way through tail.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace gw {
namespace shm {

struct RingHeader {
  alignas(64) std::atomic<uint64_t> head{0};
  alignas(64) std::atomic<uint64_t> tail{0};
  alignas(64) std::atomic<uint32_t> writer_waiting{0};  // producer found the ring full
};

class Ring {
 public:
  Ring() = default;
  Ring(RingHeader* header, char* data, size_t capacity) : h_(header), data_(data), cap_(capacity) {}

  // Copies as much of the iovecs as fits; returns the bytes written.
  size_t write(const iovec* iov, int iovcnt) {
    uint64_t head = h_->head.load(std::memory_order_relaxed);
    uint64_t tail = h_->tail.load(std::memory_order_acquire);
    size_t space = cap_ - size_t(head - tail);
    size_t written = 0;
    for (int i = 0; i < iovcnt && space > 0; ++i) {
      size_t n = iov[i].iov_len < space ? iov[i].iov_len : space;
      copy_in(head + written, static_cast<const char*>(iov[i].iov_base), n);
      written += n;
      space -= n;
    }
    if (written) h_->head.store(head + written, std::memory_order_release);
    return written;
  }

  size_t read(void* buf, size_t n) {
    uint64_t tail = h_->tail.load(std::memory_order_relaxed);
    uint64_t head = h_->head.load(std::memory_order_acquire);
    size_t avail = size_t(head - tail);
    if (n > avail) n = avail;
    if (n == 0) return 0;
    size_t pos = size_t(tail % cap_);
    size_t first = n < cap_ - pos ? n : cap_ - pos;
    memcpy(buf, data_ + pos, first);
    if (n > first) memcpy(static_cast<char*>(buf) + first, data_, n - first);
    h_->tail.store(tail + n, std::memory_order_release);
    return n;
  }

  // The readable bytes that sit contiguously in the ring (up to its end), in place; they stay
  // the producer's to keep until consume() returns them.
  size_t peek(const char** data) const {
    uint64_t tail = h_->tail.load(std::memory_order_relaxed);
    uint64_t head = h_->head.load(std::memory_order_acquire);
    size_t pos = size_t(tail % cap_);
    size_t avail = size_t(head - tail);
    *data = data_ + pos;
    return avail < cap_ - pos ? avail : cap_ - pos;
  }
  // Returns n bytes shown by peek() to the producer.
  void consume(size_t n) {
    h_->tail.store(h_->tail.load(std::memory_order_relaxed) + n, std::memory_order_release);
  }

  bool empty() const {
    return h_->head.load(std::memory_order_acquire) == h_->tail.load(std::memory_order_relaxed);
  }
  size_t free_space() const {
    return cap_ - size_t(h_->head.load(std::memory_order_relaxed) -
                         h_->tail.load(std::memory_order_acquire));
  }
  RingHeader* header() const { return h_; }

 private:
  void copy_in(uint64_t at, const char* src, size_t n) {
    size_t pos = size_t(at % cap_);
    size_t first = n < cap_ - pos ? n : cap_ - pos;
    memcpy(data_ + pos, src, first);
    if (n > first) memcpy(data_, src + first, n - first);
  }

  RingHeader* h_ = nullptr;
  char* data_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace shm
}  // namespace gw
