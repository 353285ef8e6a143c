#include "gradwire/collectives/cost_model.h"

namespace gw {

CostModel CostModel::for_context(const OpContext& ctx) {
  // Shared memory: a message is a ring write plus a doorbell; the bytes are copied twice.
  // TCP: a syscall pair and a wake-up per message; loopback moves ~4 GB/s per direction.
  if (ctx.transport->all_peers_local()) return CostModel{3e-6, 1.0 / 5e9, 1.0 / 8e9, "shm"};
  return CostModel{25e-6, 1.0 / 3e9, 1.0 / 8e9, "tcp"};
}

double CostModel::ring_allreduce(int n, size_t bytes) const {
  double b = double(bytes);
  return 2.0 * (n - 1) * (alpha + b / n * beta) + double(n - 1) / n * b * gamma;
}

double CostModel::recursive_doubling_allreduce(int n, size_t bytes) const {
  int steps = 0;
  const int p = pow2_floor(n, &steps);
  double b = double(bytes);
  double t = steps * (alpha + b * beta + b * gamma);
  if (p != n) t += 2.0 * (alpha + b * beta) + b * gamma;  // fold in the extra ranks, send back
  return t;
}

double CostModel::halving_doubling_allreduce(int n, size_t bytes) const {
  int steps = 0;
  const int p = pow2_floor(n, &steps);
  double b = double(bytes);
  double t = 2.0 * steps * alpha + 2.0 * (p - 1) / p * b * beta + double(p - 1) / p * b * gamma;
  if (p != n) t += 2.0 * (alpha + b * beta) + b * gamma;
  return t;
}

}  // namespace gw
