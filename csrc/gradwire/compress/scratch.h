// Scratch memory of the compressed collectives, reused from op to op by the thread that runs
// them.
//
// A quantized allreduce needs buffers of the order of its input (a 64 MB int8 allreduce on
// 4 ranks: ~43 MB per rank for the encoded chunks it sends, receives and gathers). Allocated per
// op, glibc serves them with mmap and returns them with munmap, so every op faults in and zeroes
// every page again: measured on 4 ranks sharing 2 cores, 64 MB int8 took 166 ms per op with
// fresh buffers and 136 ms with reused ones. Each slot keeps its largest buffer for the thread's
// life, up to kMaxRetained bytes per slot; contents are uninitialized (a receive or an encode
// fills them). One op runs at a time on a thread, and each slot has one user per op.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

namespace gw {

enum class ScratchSlot : int { kRingSend = 0, kRingRecv, kAllgather, kTiles, kCount };

class Scratch {
 public:
  static constexpr size_t kMaxRetained = size_t(256) << 20;

  // At least `bytes` bytes, valid until this object is destroyed.
  Scratch(ScratchSlot slot, size_t bytes) {
    Kept& k = kept()[int(slot)];
    if (bytes > kMaxRetained) {
      own_.reset(new uint8_t[bytes]);
      data_ = own_.get();
      return;
    }
    if (k.size < bytes) {
      k.data.reset();  // free first: the old and new buffers need not coexist
      k.data.reset(new uint8_t[bytes]);
      k.size = bytes;
    }
    data_ = k.data.get();
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;

  uint8_t* data() const { return data_; }
  template <typename T>
  T* as() const {
    return reinterpret_cast<T*>(data_);
  }

 private:
  struct Kept {
    std::unique_ptr<uint8_t[]> data;
    size_t size = 0;
  };
  static Kept* kept() {
    thread_local Kept slots[int(ScratchSlot::kCount)];
    return slots;
  }
  std::unique_ptr<uint8_t[]> own_;
  uint8_t* data_ = nullptr;
};

}  // namespace gw
