#include "gradwire/compress/error_feedback.h"

#include <cmath>

namespace gw {

void ResidualStore::compensate(const std::string& key, float* x, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<float>& r = residuals_[key];
  if (r.size() != n) r.assign(n, 0.0f);
  for (size_t i = 0; i < n; ++i) x[i] += r[i];
}

void ResidualStore::update(const std::string& key, const float* compensated, const float* sent,
                           size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<float>& r = residuals_[key];
  r.resize(n);
  for (size_t i = 0; i < n; ++i) {
    float d = compensated[i] - sent[i];
    r[i] = std::isfinite(d) ? d : 0.0f;
  }
}

void ResidualStore::with_residual(const std::string& key, size_t n,
                                  const std::function<void(float*)>& fn) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<float>& r = residuals_[key];
  if (r.size() != n) r.assign(n, 0.0f);
  fn(r.data());
}

std::vector<std::string> ResidualStore::keys() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> k;
  for (const auto& kv : residuals_) k.push_back(kv.first);
  return k;
}

bool ResidualStore::has(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  return residuals_.count(key) != 0;
}

std::vector<float> ResidualStore::get(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = residuals_.find(key);
  return it == residuals_.end() ? std::vector<float>() : it->second;
}

void ResidualStore::set(const std::string& key, std::vector<float> residual) {
  std::lock_guard<std::mutex> lock(mu_);
  residuals_[key] = std::move(residual);
}

void ResidualStore::erase(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  residuals_.erase(key);
}

void ResidualStore::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  residuals_.clear();
}

double ResidualStore::squared_norm(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = residuals_.find(key);
  double s = 0;
  if (it != residuals_.end())
    for (float v : it->second) s += double(v) * v;
  return s;
}

}  // namespace gw
