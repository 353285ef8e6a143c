// A process-shared wake-up word. Producers ring it after making data (or space) available;
// a consumer with nothing to do sleeps on it with FUTEX_WAIT instead of spinning, so that
// oversubscribed ranks yield their core. `sleepers` lets producers skip the syscall when no
// one sleeps (sequentially consistent on both sides: the Dekker pattern).
#pragma once

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cstdint>

namespace gw {
namespace shm {

struct alignas(64) Doorbell {
  std::atomic<uint32_t> seq{0};
  std::atomic<uint32_t> sleepers{0};

  uint32_t value() const { return seq.load(std::memory_order_seq_cst); }

  void ring() {
    seq.fetch_add(1, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) != 0) {
      syscall(SYS_futex, reinterpret_cast<uint32_t*>(&seq), FUTEX_WAKE, INT_MAX, nullptr, nullptr,
              0);
    }
  }

  // Sleeps while the bell still reads `seen`, at most timeout_ms.
  void wait(uint32_t seen, int timeout_ms) {
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    sleep(seen, timeout_ms);
    sleepers.fetch_sub(1, std::memory_order_seq_cst);
  }

  // Two-phase sleep, for waiters whose condition is published without a ring (mailbox.h):
  //   uint32_t seen = arm();  if (!condition) sleep(seen, ms);  disarm();
  // A producer publishes with a seq_cst store, then calls ring_if_sleeping(). Either the
  // waiter's re-check after arm() sees the data, or the producer sees the sleeper and rings,
  // which changes `seq` so the futex does not sleep (or wakes).
  uint32_t arm() {
    sleepers.fetch_add(1, std::memory_order_seq_cst);
    return seq.load(std::memory_order_seq_cst);
  }
  void sleep(uint32_t seen, int timeout_ms) {
    if (seq.load(std::memory_order_seq_cst) != seen) return;
    timespec ts{timeout_ms / 1000, long(timeout_ms % 1000) * 1000000L};
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&seq), FUTEX_WAIT, seen, &ts, nullptr, 0);
  }
  void disarm() { sleepers.fetch_sub(1, std::memory_order_seq_cst); }
  // Producer side of the two-phase sleep: no write to the shared line unless someone sleeps.
  void ring_if_sleeping() {
    if (sleepers.load(std::memory_order_seq_cst) != 0) ring();
  }
};
static_assert(std::atomic<uint32_t>::is_always_lock_free, "futex words must be lock-free");

}  // namespace shm
}  // namespace gw
