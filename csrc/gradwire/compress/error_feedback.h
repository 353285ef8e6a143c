// Error-feedback memory: one residual per key (a tensor, a DDP bucket), kept across steps.
//
// Protocol (applied once, at the sender's input, before anything goes on the wire):
//   x'       = x + residual[key]           (compensate)
//   sent     = what this rank contributes after the codec's lossy step on x'
//   residual = x' - sent                    (non-finite entries are reset to 0)
// so the sum over steps of what a rank contributed tracks the sum of its inputs, off by at most
// the current residual. Re-quantization of partial sums inside a ring is not compensated
// (docs/compression.md).
//
// A residual whose length no longer matches its key's tensor starts over from zero. Residuals are
// touched by the executing thread during an op; the accessors lock, so a state_dict taken
// between steps sees a consistent copy.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace gw {

// Sum of x[i]^2 (eight float partial sums, so that the loop vectorizes; summed in double).
double sum_of_squares(const float* x, size_t n);

// The protocol on one tile, in the SIMD build chosen for this CPU (quantize_kernels.inc):
// comp = x + residual, returning sum x^2 (the input's squared norm) ...
double feedback_compensate(const float* x, const float* residual, float* comp, size_t n);
// ... and residual = comp - sent with non-finite entries reset to 0, returning its squared norm.
double feedback_residual(const float* comp, const float* sent, float* residual, size_t n);

class ResidualStore {
 public:
  // x[i] += residual[i]; creates a zero residual of length n when missing or mis-sized.
  void compensate(const std::string& key, float* x, size_t n);
  // residual = compensated - sent (both of length n).
  void update(const std::string& key, const float* compensated, const float* sent, size_t n);

  // Runs fn(residual) on the residual of `key` under the store's lock, creating a zero one of
  // length n when missing or mis-sized: for passes that compensate and update tile by tile. The
  // quantized ring holds it for its whole op (it updates chunks as the ring reaches them), so an
  // accessor called meanwhile waits for that op to end.
  // fn returns the squared L2 norms of the input it compensated and of the new residual.
  struct Norms {
    double input_sq = 0, residual_sq = 0;
  };
  void with_residual(const std::string& key, size_t n, const std::function<Norms(float*)>& fn);

  std::vector<std::string> keys() const;
  bool has(const std::string& key) const;
  std::vector<float> get(const std::string& key) const;
  void set(const std::string& key, std::vector<float> residual);
  void erase(const std::string& key);
  void clear();
  // Squared L2 norm of one residual (0 for an unknown key); kept from the pass that wrote it.
  double squared_norm(const std::string& key) const;
  // Squared L2 norm of the input the last compensate of `key` saw (before compensation): what
  // the DDP fallback policy compares the residual with, without another pass over the data.
  double input_squared_norm(const std::string& key) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::vector<float>> residuals_;
  std::map<std::string, Norms> norms_;  // per key, from the pass that wrote the residual
};

}  // namespace gw
