#include "gradwire/ps/partitioner.h"

#include "gradwire/common/error.h"

namespace gw {
namespace ps {

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

DensePartition::DensePartition(const std::string& name, uint64_t numel, uint64_t block_elems,
                               int num_servers)
    : numel_(numel), base_(fnv1a64(name)), num_servers_(num_servers) {
  GW_CHECK_ARG(num_servers > 0, "number of parameter servers must be positive");
  GW_CHECK_ARG(block_elems > 0, "dense block size must be positive");
  per_server_.resize(size_t(num_servers));
  uint64_t nblocks = (numel + block_elems - 1) / block_elems;
  for (uint64_t b = 0; b < nblocks; ++b) {
    uint64_t off = b * block_elems;
    uint64_t cnt = std::min(block_elems, numel - off);
    per_server_[size_t(server_of_block(b))].push_back(Block{b, off, cnt});
  }
}

uint64_t DensePartition::shard_elems(int s) const {
  uint64_t n = 0;
  for (const Block& b : blocks_of(s)) n += b.count;
  return n;
}

}  // namespace ps
}  // namespace gw
