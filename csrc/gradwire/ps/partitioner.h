// Where every key lives (docs/parameter-server.md, "Partitioning"). Workers and servers compute
// it independently, so it must stay a pure function of its inputs.
//
// Dense tensor `name` with N elements is cut into blocks of B elements (the last may be
// shorter); block b lives on server (fnv1a64(name) + b) mod S. Consecutive blocks land on
// consecutive servers, so a large tensor is spread evenly and small tensors start on different
// servers. A server stores its blocks of a tensor back to back in block order (its "shard").
//
// Sparse row r lives on server splitmix64(r) mod S: a fixed 64-bit mixing function, so
// neighbouring ids spread evenly whatever their pattern.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gw {
namespace ps {

uint64_t fnv1a64(const std::string& s);
std::string shape_str(const std::vector<int64_t>& shape);  // "[2, 3]" for error messages
uint64_t splitmix64(uint64_t x);

struct Block {
  uint64_t index = 0;
  uint64_t offset = 0;  // first element in the whole tensor
  uint64_t count = 0;
};

class DensePartition {
 public:
  DensePartition(const std::string& name, uint64_t numel, uint64_t block_elems, int num_servers);
  int server_of_block(uint64_t b) const { return int((base_ + b) % uint64_t(num_servers_)); }
  // The blocks server s owns, in block order.
  const std::vector<Block>& blocks_of(int s) const { return per_server_[size_t(s)]; }
  uint64_t shard_elems(int s) const;
  uint64_t numel() const { return numel_; }

 private:
  uint64_t numel_, base_;
  int num_servers_;
  std::vector<std::vector<Block>> per_server_;
};

inline int server_of_row(int64_t row, int num_servers) {
  return int(splitmix64(uint64_t(row)) % uint64_t(num_servers));
}

}  // namespace ps
}  // namespace gw
