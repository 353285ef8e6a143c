// Buffers for messages that arrive before their receive is posted ("unexpected" messages).
//
// Such a message is written once into its buffer and copied out once when the receive is
// posted, so the buffer needs no zero fill, and its pages should already be mapped: a freshly
// allocated multi-megabyte buffer costs a page fault per 4 KiB (plus, as a std::vector, a
// memset), which profiles of large allreduces showed at ~10% of the time. The pool hands out
// uninitialized buffers and keeps a few released ones (kMaxCachedBuffers, kMaxCachedBytes) for
// reuse; a pool is used by one thread (the transport's), so it has no locks.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace gw {

class MessageBufferPool;

// An uninitialized byte buffer of a fixed size; gives its memory back to the pool when dropped.
class MessageBuffer {
 public:
  MessageBuffer() = default;
  MessageBuffer(MessageBuffer&& o) noexcept;
  MessageBuffer& operator=(MessageBuffer&& o) noexcept;
  MessageBuffer(const MessageBuffer&) = delete;
  MessageBuffer& operator=(const MessageBuffer&) = delete;
  ~MessageBuffer();

  char* data() { return mem_.get(); }
  const char* data() const { return mem_.get(); }
  size_t size() const { return size_; }

 private:
  friend class MessageBufferPool;
  MessageBuffer(MessageBufferPool* pool, std::unique_ptr<char[]> mem, size_t capacity, size_t size)
      : pool_(pool), mem_(std::move(mem)), capacity_(capacity), size_(size) {}
  void release();

  MessageBufferPool* pool_ = nullptr;
  std::unique_ptr<char[]> mem_;
  size_t capacity_ = 0;
  size_t size_ = 0;
};

class MessageBufferPool {
 public:
  static constexpr size_t kMaxCachedBuffers = 8;
  static constexpr size_t kMaxCachedBytes = size_t(64) << 20;

  // A buffer of `size` bytes: the smallest cached one that fits and wastes at most half of
  // itself, else a new one. Its contents are unspecified.
  MessageBuffer acquire(size_t size);
  size_t cached_bytes() const { return cached_bytes_; }

 private:
  friend class MessageBuffer;
  struct Block {
    std::unique_ptr<char[]> mem;
    size_t capacity;
  };
  void give_back(std::unique_ptr<char[]> mem, size_t capacity);

  std::vector<Block> free_;
  size_t cached_bytes_ = 0;
};

}  // namespace gw
