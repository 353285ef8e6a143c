// The handle of one submitted op. It completes exactly once, on the thread that executed the op;
// the completion callback runs right after, still on that thread and before the next op starts
// (docs/architecture.md, "completion model").
#pragma once

#include <atomic>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "gradwire/transport/frame.h"

namespace gw {

class Work {
 public:
  using Callback = std::function<void(Work&)>;

  // The description ("allreduce(float32 x 4, SUM) on rank 0 of group 'g'") is built only when
  // asked for (errors, logs): formatting it on every op cost a small allreduce ~18% of its
  // instructions.
  Work(const OpFingerprint& fp, int rank, std::shared_ptr<const std::string> group,
       Callback on_complete)
      : fp_(fp), rank_(rank), group_(std::move(group)), on_complete_(std::move(on_complete)) {}

  std::string description() const;
  bool is_completed() const;
  // nullptr on success.
  std::exception_ptr error() const;
  // Blocks until the op completed; rethrows its error. Every op has a deadline, so this returns.
  void wait() const;

  // Engine side: record the outcome, wake waiters, then run the callback.
  void finish(std::exception_ptr error);

  // A receive from any source: the rank its message came from (-1 until it matched).
  int source_rank() const { return source_rank_.load(); }
  void set_source_rank(int r) { source_rank_.store(r); }

 private:
  const OpFingerprint fp_;
  const int rank_;
  const std::shared_ptr<const std::string> group_;
  Callback on_complete_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
  std::atomic<int> source_rank_{-1};
};

}  // namespace gw
