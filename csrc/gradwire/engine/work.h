// The handle of one submitted op. It completes exactly once, on the thread that executed the op;
// the completion callback runs right after, still on that thread and before the next op starts
// (docs/architecture.md, "completion model").
#pragma once

#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <string>

namespace gw {

class Work {
 public:
  using Callback = std::function<void(Work&)>;

  Work(std::string description, Callback on_complete)
      : description_(std::move(description)), on_complete_(std::move(on_complete)) {}

  const std::string& description() const { return description_; }
  bool is_completed() const;
  // nullptr on success.
  std::exception_ptr error() const;
  // Blocks until the op completed; rethrows its error. Every op has a deadline, so this returns.
  void wait() const;

  // Engine side: record the outcome, wake waiters, then run the callback.
  void finish(std::exception_ptr error);

 private:
  const std::string description_;
  Callback on_complete_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  bool done_ = false;
  std::exception_ptr error_;
};

}  // namespace gw
