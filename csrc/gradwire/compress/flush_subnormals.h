// Subnormal floats flushed to zero while a compressed collective runs on this thread.
//
// Late in training, gradients and error-feedback residuals pick up subnormal values (below
// 1.2e-38; e.g. a residual entry smaller than half a quantization step of a block whose values
// are tiny). On x86 every arithmetic op that reads or produces one takes a microcode assist of
// about a hundred cycles: measured in the digits MLP of bench/compression (4 ranks, int8), 0.3 M
// of the 67 MB bucket's residual entries were subnormal by step 30 and 0.47 M by step 100, and
// the backward-plus-allreduce phase grew from ~330 ms to ~410 ms per step while dense steps stayed
// flat. Such values carry nothing a lossy codec keeps, so the codec math runs with the SSE
// control bits FTZ (results flush to zero) and DAZ (inputs read as zero) set, and the caller's
// mode is restored afterwards. Dense collectives are not affected.
#pragma once

#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

namespace gw {

class FlushSubnormals {
 public:
#if defined(__x86_64__) || defined(__i386__)
  FlushSubnormals() : saved_(_mm_getcsr()) { _mm_setcsr(saved_ | kFtz | kDaz); }
  ~FlushSubnormals() { _mm_setcsr(saved_); }

 private:
  static constexpr unsigned kFtz = 0x8000, kDaz = 0x0040;
  unsigned saved_;
#else
  FlushSubnormals() = default;
#endif
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;
};

}  // namespace gw
