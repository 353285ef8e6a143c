// What an algorithm sees: the transport, its place in the group, and the op it runs. Messages it
// posts are keyed by (op seq, tag); the tag layout is each algorithm's own business.
#pragma once

#include <algorithm>
#include <cstddef>
#include <vector>

#include "gradwire/common/config.h"
#include "gradwire/transport/transport.h"

namespace gw {

struct OpContext {
  Transport* transport;
  int rank;
  int size;
  uint64_t seq;
  OpFingerprint fp;
  const Config* config;

  void send(int peer, uint32_t tag, const void* data, size_t bytes, Request* req) const {
    transport->isend(peer, MsgKey{seq, tag}, fp, data, bytes, req);
  }
  void recv(int peer, uint32_t tag, void* data, size_t bytes, Request* req) const {
    transport->irecv(peer, MsgKey{seq, tag}, fp, data, bytes, req);
  }
  // Receive and reduce into `data` as the bytes arrive (no staging copy).
  void recv_reduce(int peer, uint32_t tag, void* data, size_t bytes, DType dtype, ReduceOp op,
                   Request* req) const {
    transport->irecv_reduce(peer, MsgKey{seq, tag}, fp, data, bytes, dtype, op, req);
  }
  void wait(Request* req) const { transport->wait(req); }
  void wait_all(std::vector<Request>& reqs) const {
    for (auto& r : reqs) transport->wait(&r);
  }
  int mod(int k) const { return ((k % size) + size) % size; }
};

// `count` elements split into `parts` contiguous pieces whose sizes differ by at most one; the
// larger pieces come first.
struct Partition {
  size_t count;
  int parts;
  size_t len(int i) const { return count / parts + (size_t(i) < count % parts ? 1 : 0); }
  size_t offset(int i) const {
    size_t base = count / parts, extra = count % parts;
    return size_t(i) * base + std::min<size_t>(size_t(i), extra);
  }
};

// The largest power of two p <= n (n >= 1), with log2(p) in *steps when asked: the group the
// recursive-doubling family works on; the n - p extra ranks fold into the first ones.
inline int pow2_floor(int n, int* steps = nullptr) {
  int p = 1, k = 0;
  while (p * 2 <= n) {
    p *= 2;
    ++k;
  }
  if (steps) *steps = k;
  return p;
}

}  // namespace gw
