// The shared-memory segment a rank receives through: its doorbell, then one ring and one
// small-message mailbox (mailbox.h) per possible sender rank. The owner creates it under a random
// name; each same-host peer maps it to write into its slot. The owner unlinks the name once every
// peer has mapped it, so nothing is left behind in /dev/shm whatever happens to the processes
// afterwards.
#pragma once

#include <cstddef>
#include <string>

#include "gradwire/transport/shm/doorbell.h"
#include "gradwire/transport/shm/mailbox.h"
#include "gradwire/transport/shm/ring.h"

namespace gw {
namespace shm {

// The CPU the segment's owner last waited on (-1: not yet), for peers deciding whether to yield
// their core while they spin (stream_transport.h, "shares_core"). A hint: read and written
// relaxed, possibly stale.
struct alignas(64) CpuHint {
  std::atomic<int32_t> cpu{-1};
};

class Segment {
 public:
  // Creates a new segment with `slots` rings of `ring_bytes` each and, unless mailbox_bytes is
  // 0, `slots` mailboxes of mailbox_bytes payload bytes each.
  static Segment create(int slots, size_t ring_bytes, size_t mailbox_bytes, uint32_t comm_id,
                        int rank);
  // Maps a segment another rank created.
  static Segment open(const std::string& name);

  Segment() = default;
  Segment(Segment&& o) noexcept;
  Segment& operator=(Segment&& o) noexcept;
  Segment(const Segment&) = delete;
  Segment& operator=(const Segment&) = delete;
  ~Segment();

  bool valid() const { return base_ != nullptr; }
  const std::string& name() const { return name_; }
  Doorbell* bell() const;
  std::atomic<int32_t>* cpu_hint() const;
  Ring ring(int slot) const;
  size_t mailbox_bytes() const;  // as created (0: no mailboxes)
  Mailbox mailbox(int slot) const;
  void unlink();  // owner: remove the name (mappings stay valid)

  struct Layout;  // defined in segment.cc

 private:
  void* base_ = nullptr;
  size_t bytes_ = 0;
  std::string name_;
  bool owner_ = false;
};

}  // namespace shm
}  // namespace gw
