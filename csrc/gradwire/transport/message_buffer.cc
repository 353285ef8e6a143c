#include "gradwire/transport/message_buffer.h"

#include <algorithm>

namespace gw {

MessageBuffer::MessageBuffer(MessageBuffer&& o) noexcept
    : pool_(o.pool_), mem_(std::move(o.mem_)), capacity_(o.capacity_), size_(o.size_) {
  o.pool_ = nullptr;
  o.capacity_ = o.size_ = 0;
}

MessageBuffer& MessageBuffer::operator=(MessageBuffer&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = o.pool_;
    mem_ = std::move(o.mem_);
    capacity_ = o.capacity_;
    size_ = o.size_;
    o.pool_ = nullptr;
    o.capacity_ = o.size_ = 0;
  }
  return *this;
}

MessageBuffer::~MessageBuffer() { release(); }

void MessageBuffer::release() {
  if (pool_ && mem_) pool_->give_back(std::move(mem_), capacity_);
  mem_.reset();
  pool_ = nullptr;
}

MessageBuffer MessageBufferPool::acquire(size_t size) {
  auto best = free_.end();
  for (auto it = free_.begin(); it != free_.end(); ++it) {
    if (it->capacity >= size && it->capacity / 2 <= size &&
        (best == free_.end() || it->capacity < best->capacity)) {
      best = it;
    }
  }
  if (best != free_.end()) {
    Block b = std::move(*best);
    free_.erase(best);
    cached_bytes_ -= b.capacity;
    return MessageBuffer(this, std::move(b.mem), b.capacity, size);
  }
  // new char[] leaves the bytes uninitialized (a std::vector would zero them).
  return MessageBuffer(this, std::unique_ptr<char[]>(new char[std::max<size_t>(size, 1)]), size,
                       size);
}

void MessageBufferPool::give_back(std::unique_ptr<char[]> mem, size_t capacity) {
  if (capacity > kMaxCachedBytes) return;  // freed by the caller's unique_ptr
  // Make room by dropping the smallest cached buffers: large ones are the costly ones to fault in.
  std::sort(free_.begin(), free_.end(),
            [](const Block& a, const Block& b) { return a.capacity > b.capacity; });
  while (!free_.empty() &&
         (free_.size() >= kMaxCachedBuffers || cached_bytes_ + capacity > kMaxCachedBytes)) {
    if (free_.back().capacity > capacity) return;  // keep the larger ones; drop this one
    cached_bytes_ -= free_.back().capacity;
    free_.pop_back();
  }
  cached_bytes_ += capacity;
  free_.push_back(Block{std::move(mem), capacity});
}

}  // namespace gw
