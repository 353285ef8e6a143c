// Completion of one client operation that fans out to several servers: done when every part
// is, failed with the first part's error. wait() never outlives the operation's deadline.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <functional>
#include <mutex>
#include <string>

namespace gw {
namespace ps {

class PsFuture {
 public:
  PsFuture(std::string what, int parts, std::chrono::steady_clock::time_point deadline);

  void part_done(std::exception_ptr err);
  bool done() const;
  // Blocks until done; rethrows the error; TimeoutError naming the op at the deadline (the
  // parts still outstanding are cancelled through the cancel hook).
  void wait();
  const std::string& description() const { return what_; }
  void set_cancel(std::function<void()> cancel) { cancel_ = std::move(cancel); }
  // Some part gave a same-host server references to the caller's buffers (data it reads, or a
  // destination it writes; ps/single_copy.h). After a failure or timeout such a server may
  // still be accessing them, so the caller must keep them allocated (the Python layer does).
  void note_remote_access() { remote_access_ = true; }
  bool remote_access() const { return remote_access_.load(); }

 private:
  std::string what_;
  std::chrono::steady_clock::time_point deadline_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  int remaining_;
  std::exception_ptr err_;
  std::function<void()> cancel_;
  std::atomic<bool> remote_access_{false};
};

}  // namespace ps
}  // namespace gw
