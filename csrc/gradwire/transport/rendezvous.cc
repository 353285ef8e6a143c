#include "gradwire/transport/rendezvous.h"

#include <random>

namespace gw {

std::string random_hex(size_t bytes) {
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < 2 * bytes; ++i) s.push_back(hex[rd() % 16]);
  return s;
}

Rendezvous Rendezvous::open(Store& store, int rank) {
  if (rank == 0) {
    std::string nonce = random_hex(8);
    store.set(kNonceKey, nonce);
    return Rendezvous(&store, nonce);
  }
  return Rendezvous(&store, store.get(kNonceKey));
}

void Rendezvous::set(const std::string& name, const std::string& value) const {
  store_->set(key(name), value);
}

std::string Rendezvous::get(const std::string& name) const { return store_->get(key(name)); }

bool Rendezvous::stale() const { return store_->get(kNonceKey) != nonce_; }

}  // namespace gw
