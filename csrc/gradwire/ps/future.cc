#include "gradwire/ps/future.h"

#include "gradwire/common/error.h"

namespace gw {
namespace ps {

PsFuture::PsFuture(std::string what, int parts, std::chrono::steady_clock::time_point deadline)
    : what_(std::move(what)), deadline_(deadline), remaining_(parts) {}

void PsFuture::part_done(std::exception_ptr err) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (err && !err_) err_ = err;
    if (remaining_ > 0) --remaining_;
  }
  cv_.notify_all();
}

bool PsFuture::done() const {
  std::lock_guard<std::mutex> lk(mu_);
  return remaining_ == 0;
}

void PsFuture::wait() {
  std::unique_lock<std::mutex> lk(mu_);
  if (!cv_.wait_until(lk, deadline_, [&] { return remaining_ == 0; })) {
    lk.unlock();
    if (cancel_) cancel_();
    lk.lock();
    if (remaining_ != 0) {
      err_ = std::make_exception_ptr(TimeoutError(str(
          what_, " did not complete before its deadline (GRADWIRE_PS_TIMEOUT or connect(",
          "timeout=...)); a BSP/SSP read waits for the slowest worker, so a stuck or dead worker ",
          "or server holds it")));
      remaining_ = 0;
    }
  }
  if (err_) std::rethrow_exception(err_);
}

}  // namespace ps
}  // namespace gw
