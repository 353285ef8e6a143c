// Consistency modes (docs/parameter-server.md, "Consistency").
//
// Every worker has a clock, advanced by client.clock() and sent to every server; each request
// carries the clock of the worker that issued it. A server knows every worker's clock, hence
// min_clock, the clock of the slowest worker.
//
//   ASP  a push is applied on arrival; a pull never waits.
//   SSP  a push is applied on arrival; a pull at clock c waits while c > min_clock + s.
//   BSP  pushes made at clock c are summed (in worker order, so the result does not depend on
//        arrival order) and applied as one update once every worker has pushed that key at c,
//        or once every worker has moved past c. A pull at clock c returns the value with every
//        update of clocks < c applied; push_pull at clock c also waits for the update of c.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gw {
namespace ps {

enum class Mode : uint32_t { kBsp = 1, kAsp = 2, kSsp = 3 };
Mode parse_mode(const std::string& s);  // "bsp" | "asp" | "ssp"
const char* mode_name(Mode m);

class WorkerClocks {
 public:
  explicit WorkerClocks(int num_workers) : clocks_(size_t(num_workers), 0) {}
  // Clocks only move forward: a resent or reordered clock message is harmless.
  void advance(int worker, uint64_t clock);
  uint64_t min() const;
  int slowest() const;  // the worker holding min()
  const std::vector<uint64_t>& all() const { return clocks_; }
  std::vector<uint64_t>& mutable_all() { return clocks_; }

 private:
  std::vector<uint64_t> clocks_;
};

// BSP readiness of a read that needs every update of clocks <= t applied (t = c - 1 for a pull
// at clock c, t = c for push_pull). `earliest_pending` is the key's earliest buffered clock (or
// UINT64_MAX), `last_applied` the latest clock whose update was applied (or -1).
bool bsp_read_ready(int64_t t, uint64_t earliest_pending, int64_t last_applied, uint64_t min_clock);

// SSP: may a worker at clock c read now?
inline bool ssp_read_ready(uint64_t c, uint64_t min_clock, uint64_t staleness) {
  return c <= min_clock + staleness;
}

}  // namespace ps
}  // namespace gw
