// The alpha-beta-gamma cost model that chooses algorithms (Thakur, Rabenseifner and Gropp,
// "Optimization of collective communication operations in MPICH", 2005): a message costs
// alpha + bytes * beta on a link, and reducing costs gamma per byte. Constants are per link kind,
// measured on loopback TCP and shared memory (docs/benchmarks.md); GRADWIRE_ALGO overrides.
#pragma once

#include <cstddef>
#include <string>

#include "gradwire/collectives/context.h"

namespace gw {

struct CostModel {
  double alpha;  // seconds per message
  double beta;   // seconds per byte sent
  double gamma;  // seconds per byte reduced
  const char* link;

  static CostModel for_context(const OpContext& ctx);

  // Ring reduce-scatter + allgather: 2(n-1) steps of bytes/n each, (n-1)/n of the bytes reduced.
  double ring_allreduce(int n, size_t bytes) const;
  // Recursive doubling over p = 2^floor(log2 n), plus a fold and an unfold when n != p.
  double recursive_doubling_allreduce(int n, size_t bytes) const;
  // Halving-doubling over p = 2^floor(log2 n): 2 log2(p) steps moving 2(p-1)/p of the bytes,
  // (p-1)/p of them reduced, plus the fold and unfold when n != p.
  double halving_doubling_allreduce(int n, size_t bytes) const;
};

}  // namespace gw
