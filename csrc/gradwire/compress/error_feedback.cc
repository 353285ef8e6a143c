#include "gradwire/compress/error_feedback.h"

#include <cmath>
#include <string>

#include "gradwire/reduce/reduce.h"

namespace gw {
namespace generic {
double feedback_compensate(const float* x, const float* r, float* comp, size_t n);
double feedback_residual(const float* comp, const float* sent, float* r, size_t n);
}  // namespace generic
namespace avx2 {
double feedback_compensate(const float* x, const float* r, float* comp, size_t n);
double feedback_residual(const float* comp, const float* sent, float* r, size_t n);
}  // namespace avx2

namespace {
bool use_avx2() {
  static const bool v = std::string(simd_level()) == "avx2";
  return v;
}
}  // namespace

double feedback_compensate(const float* x, const float* residual, float* comp, size_t n) {
  return use_avx2() ? avx2::feedback_compensate(x, residual, comp, n)
                    : generic::feedback_compensate(x, residual, comp, n);
}
double feedback_residual(const float* comp, const float* sent, float* residual, size_t n) {
  return use_avx2() ? avx2::feedback_residual(comp, sent, residual, n)
                    : generic::feedback_residual(comp, sent, residual, n);
}

double sum_of_squares(const float* x, size_t n) {
  float acc[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += x[i + k] * x[i + k];
  double s = 0;
  for (; i < n; ++i) s += double(x[i]) * x[i];
  for (float a : acc) s += a;
  return s;
}

void ResidualStore::compensate(const std::string& key, float* x, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<float>& r = residuals_[key];
  if (r.size() != n) r.assign(n, 0.0f);
  norms_[key].input_sq = sum_of_squares(x, n);
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
  norms_[key].residual_sq = sum_of_squares(r.data(), n);
}

void ResidualStore::with_residual(const std::string& key, size_t n,
                                  const std::function<Norms(float*)>& fn) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<float>& r = residuals_[key];
  if (r.size() != n) r.assign(n, 0.0f);
  norms_[key] = fn(r.data());
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
  norms_[key] = Norms{0, sum_of_squares(residual.data(), residual.size())};
  residuals_[key] = std::move(residual);
}

void ResidualStore::erase(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  residuals_.erase(key);
  norms_.erase(key);
}

void ResidualStore::clear() {
  std::lock_guard<std::mutex> lock(mu_);
  residuals_.clear();
  norms_.clear();
}

double ResidualStore::squared_norm(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = norms_.find(key);
  return it == norms_.end() || !residuals_.count(key) ? 0.0 : it->second.residual_sq;
}

double ResidualStore::input_squared_norm(const std::string& key) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = norms_.find(key);
  return it == norms_.end() ? 0.0 : it->second.input_sq;
}

}  // namespace gw
