#include "gradwire/ps/consistency.h"

#include <algorithm>

#include "gradwire/common/error.h"

namespace gw {
namespace ps {

Mode parse_mode(const std::string& s) {
  if (s == "bsp" || s == "BSP") return Mode::kBsp;
  if (s == "asp" || s == "ASP") return Mode::kAsp;
  if (s == "ssp" || s == "SSP") return Mode::kSsp;
  GW_THROW(InvalidArgument, "consistency mode '", s, "' must be one of bsp, asp, ssp");
}

const char* mode_name(Mode m) {
  switch (m) {
    case Mode::kBsp:
      return "bsp";
    case Mode::kAsp:
      return "asp";
    case Mode::kSsp:
      return "ssp";
  }
  return "unknown";
}

void WorkerClocks::advance(int worker, uint64_t clock) {
  uint64_t& c = clocks_[size_t(worker)];
  c = std::max(c, clock);
}

uint64_t WorkerClocks::min() const { return *std::min_element(clocks_.begin(), clocks_.end()); }

int WorkerClocks::slowest() const {
  return int(std::min_element(clocks_.begin(), clocks_.end()) - clocks_.begin());
}

bool bsp_read_ready(int64_t t, uint64_t earliest_pending, int64_t last_applied,
                    uint64_t min_clock) {
  if (t < 0) return true;
  // An update of a clock <= t is still buffered: wait for it.
  if (earliest_pending <= uint64_t(t)) return false;
  // Every worker has moved past t (all its pushes of clocks <= t were handled before its clock
  // message, connections being served in order), or the update of a clock >= t was applied
  // with every worker's push (so every worker had already reached it).
  return min_clock > uint64_t(t) || last_applied >= t;
}

}  // namespace ps
}  // namespace gw
