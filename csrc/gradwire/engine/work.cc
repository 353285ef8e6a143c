#include "gradwire/engine/work.h"

#include "gradwire/common/logging.h"

namespace gw {

std::string Work::description() const {
  return str(fp_.describe(), " on rank ", rank_, " of group '", *group_, "'");
}

bool Work::is_completed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return done_;
}

std::exception_ptr Work::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

void Work::wait() const {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return done_; });
  if (error_) std::rethrow_exception(error_);
}

void Work::finish(std::exception_ptr error) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    error_ = error;
  }
  cv_.notify_all();
  if (on_complete_) {
    Callback cb = std::move(on_complete_);
    try {
      cb(*this);
    } catch (const std::exception& e) {
      GW_LOG(kError, "completion callback of ", description(), " failed: ", e.what());
    }
  }
}

}  // namespace gw
