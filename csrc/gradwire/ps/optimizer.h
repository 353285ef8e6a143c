// Server-side optimizers, applied per dense shard or per sparse row. Their state (momentum,
// squared-gradient sums, Adam moments) lives beside the parameters and is checkpointed with
// them. The update rules are those of torch.optim (SGD with dampening 0 and no Nesterov,
// Adagrad with lr_decay 0 and initial accumulator 0, Adam without weight decay or amsgrad), so a
// single-process torch run is the reference the tests compare against.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "gradwire/ps/messages.h"

namespace gw {
namespace ps {

enum class OptKind : uint32_t { kSgd = 1, kAdagrad = 2, kAdam = 3 };

struct OptSpec {
  OptKind kind = OptKind::kSgd;
  double lr = 0.1;
  double momentum = 0.0;  // SGD
  double eps = 1e-10;     // Adagrad, Adam
  double beta1 = 0.9;     // Adam
  double beta2 = 0.999;   // Adam

  bool operator==(const OptSpec& o) const {
    return kind == o.kind && lr == o.lr && momentum == o.momentum && eps == o.eps &&
           beta1 == o.beta1 && beta2 == o.beta2;
  }
  std::string describe() const;  // "SGD(lr=0.1, momentum=0)"
  void validate() const;         // InvalidArgument on a negative lr, betas outside [0, 1), ...
  void encode(Writer& w) const;
  static OptSpec decode(Reader& r);
  // Floats of state per parameter: SGD 0 (1 with momentum), Adagrad 1, Adam 2.
  size_t state_slots() const;
};

// One optimizer step on n parameters. `state` holds state_slots() slots of n floats each,
// `slot_stride` floats apart (0: n, the slots back to back; a tile of a longer vector passes
// the vector's length); `step` is the 1-based count of steps taken by these parameters, this
// one included.
void apply_update(const OptSpec& opt, float* param, float* state, const float* grad, size_t n,
                  int64_t step, size_t slot_stride = 0);

}  // namespace ps
}  // namespace gw
