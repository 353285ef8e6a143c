#include "gradwire/ps/row_store.h"

#include <new>

namespace gw {
namespace ps {
namespace {

constexpr size_t kMinIndex = 16;

// MurmurHash3's 64-bit finalizer. Deliberately not splitmix64: the partitioner sends row r to
// shard splitmix64(r) mod S, so on one shard those bits are all alike and would crowd the index.
uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  x ^= x >> 33;
  return x;
}

}  // namespace

void RowStore::ChunkFree::operator()(char* p) const {
  ::operator delete[](p, std::align_val_t(kAlign));
}

RowStore::RowStore(uint32_t dim, size_t state_slots)
    : dim_(dim), row_floats_(size_t(dim) * (1 + state_slots)) {
  stride_ = (kHeaderBytes + row_floats_ * sizeof(float) + 7) / 8 * 8;
  // The largest power of two of slots that fits a chunk (at least one).
  while (chunk_shift_ < 40 && (stride_ << (chunk_shift_ + 1)) <= kChunkBytes) ++chunk_shift_;
  chunk_mask_ = (size_t(1) << chunk_shift_) - 1;
}

size_t RowStore::bucket(int64_t id) const { return size_t(mix(uint64_t(id)) >> index_shift_); }

float* RowStore::find(int64_t id) const {
  if (index_.empty()) return nullptr;
  const size_t mask = index_.size() - 1;
  for (size_t b = bucket(id);; b = (b + 1) & mask) {
    const Entry& e = index_[b];
    if (e.id == id) return slot(e.slot);
    if (e.id < 0) return nullptr;
  }
}

float* RowStore::emplace(int64_t id, bool* created) {
  // Grow before probing, so the entry found or claimed below is the final one.
  if ((ids_.size() + 1) * 10 > index_.size() * 7) grow_index();
  const size_t mask = index_.size() - 1;
  for (size_t b = bucket(id);; b = (b + 1) & mask) {
    Entry& e = index_[b];
    if (e.id == id) {
      *created = false;
      return slot(e.slot);
    }
    if (e.id < 0) {
      e.id = id;
      e.slot = ids_.size();
      float* row = new_slot();
      ids_.push_back(id);
      step(row) = 0;
      *created = true;
      return row;
    }
  }
}

float* RowStore::new_slot() {
  size_t i = ids_.size();
  if ((i >> chunk_shift_) == chunks_.size()) {
    size_t bytes = stride_ << chunk_shift_;
    bytes = (bytes + kAlign - 1) / kAlign * kAlign;
    chunks_.emplace_back(static_cast<char*>(::operator new[](bytes, std::align_val_t(kAlign))));
  }
  return slot(i);
}

void RowStore::grow_index() {
  size_t cap = index_.empty() ? kMinIndex : index_.size() * 2;
  index_.assign(cap, Entry{-1, 0});
  index_shift_ = 64;
  for (size_t c = cap; c > 1; c >>= 1) --index_shift_;
  const size_t mask = cap - 1;
  for (size_t i = 0; i < ids_.size(); ++i) {
    size_t b = bucket(ids_[i]);
    while (index_[b].id >= 0) b = (b + 1) & mask;
    index_[b] = Entry{ids_[i], i};
  }
}

void RowStore::prefetch_row(const float* row) const {
  // Up to 16 lines (the hardware streams the rest of a long row), and the last byte's line,
  // since a slot need not start on a line.
  const char* p = reinterpret_cast<const char*>(row) - kHeaderBytes;
  const size_t bytes = stride_ < 16 * kAlign ? stride_ : 16 * kAlign;
  for (size_t off = 0; off < bytes; off += kAlign) __builtin_prefetch(p + off, 1);
  __builtin_prefetch(p + bytes - 1, 1);
}

void RowStore::prefetch_params(const float* row) const {
  const char* p = reinterpret_cast<const char*>(row);
  const size_t bytes = dim_ * sizeof(float) < 16 * kAlign ? dim_ * sizeof(float) : 16 * kAlign;
  for (size_t off = 0; off < bytes; off += kAlign) __builtin_prefetch(p + off, 0);
  if (bytes) __builtin_prefetch(p + bytes - 1, 0);
}

}  // namespace ps
}  // namespace gw
