// Buffers for messages that arrive before their receive is posted (early arrivals), reused.
//
// A peer that runs ahead of this rank (back-to-back collectives, a rank that left the previous
// op first) sends chunks this rank has not asked for yet; they are held until the receive is
// posted. They come in the same few sizes op after op (ring chunks), and allocating each one
// fresh is costly at these sizes: glibc serves them with mmap and returns them with munmap (or
// trims them off the heap), so every 4 KiB of every early chunk took a page fault and a zeroed
// page (measured: a 2-rank 4 MB allreduce called back to back took 1.86 ms with fresh buffers,
// 1.05 ms without the faults). Freed buffers are kept here, by power-of-two capacity, up to a
// bound; the contents are left uninitialized, since the payload overwrites them.
//
// Only the thread executing an op touches a transport, so there is no locking.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <vector>

namespace gw {

class EarlyBufferPool {
 public:
  // Keeps at most `max_cached` bytes of free buffers, none larger than `max_buffer`.
  EarlyBufferPool(size_t max_cached, size_t max_buffer)
      : max_cached_(max_cached), max_buffer_(max_buffer) {}
  // A buffer of at least n bytes; *capacity receives its size.
  std::unique_ptr<char[]> take(size_t n, size_t* capacity) {
    if (n > max_buffer_) {  // never cached: exactly its size
      *capacity = n;
      return std::unique_ptr<char[]>(new char[n]);
    }
    size_t cap = 4096;
    while (cap < n) cap <<= 1;
    *capacity = cap;
    auto it = free_.find(cap);
    if (it != free_.end() && !it->second.empty()) {
      std::unique_ptr<char[]> p = std::move(it->second.back());
      it->second.pop_back();
      cached_ -= cap;
      return p;
    }
    return std::unique_ptr<char[]>(new char[cap]);
  }
  void give(std::unique_ptr<char[]> p, size_t capacity) {
    if (!p || capacity > max_buffer_ || cached_ + capacity > max_cached_) return;
    cached_ += capacity;
    free_[capacity].push_back(std::move(p));
  }
  size_t cached_bytes() const { return cached_; }

 private:
  size_t max_cached_, max_buffer_;
  size_t cached_ = 0;
  std::map<size_t, std::vector<std::unique_ptr<char[]>>> free_;
};

// The bytes of one early message: a pooled buffer, handed back when the message is delivered
// or dropped.
class EarlyBytes {
 public:
  EarlyBytes(EarlyBufferPool* pool, size_t n) : pool_(pool), size_(n) {
    mem_ = pool_->take(n, &capacity_);
  }
  EarlyBytes(EarlyBytes&& o) noexcept
      : pool_(o.pool_), mem_(std::move(o.mem_)), size_(o.size_), capacity_(o.capacity_) {}
  EarlyBytes& operator=(EarlyBytes&&) = delete;
  ~EarlyBytes() {
    if (mem_) pool_->give(std::move(mem_), capacity_);
  }
  char* data() { return mem_.get(); }
  size_t size() const { return size_; }

 private:
  EarlyBufferPool* pool_;
  std::unique_ptr<char[]> mem_;
  size_t size_;
  size_t capacity_ = 0;
};

}  // namespace gw
