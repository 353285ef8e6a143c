// The store keys of one connection set-up. Each creation of a communicator draws a fresh
// namespace: rank 0 writes a random nonce under kNonceKey and every other key of the set-up
// (the job secret, each rank's address) lives under that nonce. A store that outlives a job
// attempt (torchrun keeps one store across restarts) therefore never hands this attempt an
// earlier attempt's address or secret as its own.
//
// A rank other than 0 may still read the previous attempt's nonce, before the new rank 0 has
// written its own. It finds out when the address it dials refuses it (the old listener is gone)
// or the handshake fails: stale() then sees the nonce changed, the set-up throws
// StaleRendezvous, and the communicator starts over under the new nonce
// (docs/wire-protocol.md, "Connection set-up").
#pragma once

#include <string>

#include "gradwire/common/error.h"
#include "gradwire/common/store.h"

namespace gw {

class StaleRendezvous : public Error {
 public:
  using Error::Error;
};

class Rendezvous {
 public:
  static constexpr const char* kNonceKey = "gradwire/rendezvous";

  // Rank 0 draws and publishes the nonce; other ranks read it (waiting until it exists).
  static Rendezvous open(Store& store, int rank);

  Store& store() const { return *store_; }
  const std::string& nonce() const { return nonce_; }
  // The key `name` of this set-up.
  std::string key(const std::string& name) const { return "gradwire/" + nonce_ + "/" + name; }
  void set(const std::string& name, const std::string& value) const;
  std::string get(const std::string& name) const;
  // True when rank 0 has since started a newer set-up (this rank read an earlier nonce).
  bool stale() const;

 private:
  Rendezvous(Store* store, std::string nonce) : store_(store), nonce_(std::move(nonce)) {}
  Store* store_;
  std::string nonce_;
};

// 2 * bytes random hex digits from the OS's entropy source.
std::string random_hex(size_t bytes);

}  // namespace gw
