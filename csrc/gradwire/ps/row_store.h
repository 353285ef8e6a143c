// The rows of one sparse table on one shard: a flat arena of fixed-stride slots, indexed by an
// open-addressing hash table.
//
// A slot holds the row's optimizer step count (int64) followed by row_floats() floats: dim
// parameters, then state_slots * dim optimizer state. Slots are carved out of large chunks in
// creation order and never move: the arena grows by adding chunks, so a row pointer stays valid
// for the store's lifetime (also across creations, index growth and moves of the store). The
// index is linear probing over a power-of-two array of (id, slot) entries at a load factor of at
// most 0.7; ids are >= 0, so -1 marks an empty entry. Rows are never removed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace gw {
namespace ps {

class RowStore {
 public:
  RowStore() : RowStore(0, 0) {}
  RowStore(uint32_t dim, size_t state_slots);
  RowStore(RowStore&&) noexcept = default;
  RowStore& operator=(RowStore&&) noexcept = default;
  RowStore(const RowStore&) = delete;
  RowStore& operator=(const RowStore&) = delete;

  uint32_t dim() const { return dim_; }
  // Floats per row: dim parameters, then the optimizer state.
  size_t row_floats() const { return row_floats_; }
  size_t size() const { return ids_.size(); }
  size_t rows_per_chunk() const { return size_t(1) << chunk_shift_; }
  size_t index_capacity() const { return index_.size(); }

  // The row of `id`, or nullptr when it does not exist.
  float* find(int64_t id) const;
  // The row of `id`, created when absent (*created says which). A new row's floats are
  // uninitialized and its step is 0: the caller fills them.
  float* emplace(int64_t id, bool* created);
  // The row of `id`; a new one is filled by init(float* row) (row_floats() floats).
  template <typename Init>
  float* find_or_create(int64_t id, Init&& init) {
    bool created = false;
    float* row = emplace(id, &created);
    if (created) init(row);
    return row;
  }

  // The step count of a row returned by this store.
  static int64_t& step(float* row) {
    return *reinterpret_cast<int64_t*>(reinterpret_cast<char*>(row) - kHeaderBytes);
  }

  // Hints: start loading the index entry of `id`; a row's whole slot, to update it; or only its
  // parameters, to read them.
  void prefetch_index(int64_t id) const {
    if (!index_.empty()) __builtin_prefetch(&index_[bucket(id)]);
  }
  void prefetch_row(const float* row) const;
  void prefetch_params(const float* row) const;

  // Rows in creation order: f(int64_t id, float* row).
  template <typename F>
  void for_each(F&& f) const {
    for (size_t i = 0; i < ids_.size(); ++i) f(ids_[i], slot(i));
  }

 private:
  static constexpr size_t kHeaderBytes = sizeof(int64_t);  // the step count
  static constexpr size_t kChunkBytes = size_t(1) << 20;   // target size of one arena chunk
  static constexpr size_t kAlign = 64;

  struct Entry {
    int64_t id;  // -1: empty
    uint64_t slot;
  };
  struct ChunkFree {
    void operator()(char* p) const;
  };

  size_t bucket(int64_t id) const;
  float* slot(size_t i) const {
    return reinterpret_cast<float*>(chunks_[i >> chunk_shift_].get() + (i & chunk_mask_) * stride_ +
                                    kHeaderBytes);
  }
  void grow_index();
  float* new_slot();

  uint32_t dim_ = 0;
  size_t row_floats_ = 0;
  size_t stride_ = 0;  // bytes per slot, a multiple of 8
  uint32_t chunk_shift_ = 0;
  size_t chunk_mask_ = 0;
  std::vector<std::unique_ptr<char[], ChunkFree>> chunks_;
  std::vector<int64_t> ids_;  // id of each slot, in creation order
  std::vector<Entry> index_;
  uint32_t index_shift_ = 64;  // 64 - log2(index_.size())
};

}  // namespace ps
}  // namespace gw
