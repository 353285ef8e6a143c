// Mutual authentication of a new connection with a shared job secret (docs/wire-protocol.md).
//
//   server -> client  HELLO  magic, version, comm_id, server_rank, server_nonce[16]
//   client -> server  AUTH   magic, version, comm_id, client_rank, client_nonce[16],
//                            HMAC(secret, "gw-client" | comm | ranks | nonces)
//   server -> client  OK     magic, version, status, HMAC(secret, "gw-server" | comm | ranks |
//   nonces)
//
// A server that refuses a gradwire peer answers OK with a nonzero status (why: wrong secret,
// wrong communicator, a rank that should not dial it) and no MAC, then closes; anything that
// is not a gradwire peer is closed without an answer. The client verifies OK's MAC so it never
// talks to an impostor listening on a reused port.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "gradwire/transport/tcp/socket.h"

namespace gw {
namespace tcp {

// OK's status field.
enum class HandshakeStatus : uint16_t {
  kAccepted = 0,
  kBadMac = 1,          // the client does not know the server's secret
  kWrongComm = 2,       // the client dialed another communicator's listener
  kUnexpectedRank = 3,  // the claimed rank should not dial this server
};

// The server's side in steps, so that one listener can run many handshakes at once, each with
// its own deadline (transport/mesh.cc): send hello(), collect kAuthBytes from the client, then
// check() them and send the reply.
class ServerHandshake {
 public:
  static constexpr size_t kHelloBytes = 32;
  static constexpr size_t kAuthBytes = 64;

  ServerHandshake(uint32_t comm_id, int my_rank, int world_size, const std::string& secret);
  const uint8_t* hello() const { return hello_; }
  // Returns the client's rank and sets *reply to OK; or throws ProtocolError saying why, with
  // *reply set to the refusal to send (empty when the client is not a gradwire peer).
  int check(const uint8_t* auth, std::string* reply) const;

 private:
  uint32_t comm_id_;
  int rank_;
  int world_size_;
  std::string secret_;
  uint8_t hello_[kHelloBytes];
};

// Blocking server side (one connection at a time). Returns the authenticated client's rank;
// throws ProtocolError when it fails to authenticate.
int handshake_as_server(const Socket& s, uint32_t comm_id, int my_rank, int world_size,
                        const std::string& secret, std::chrono::steady_clock::time_point deadline);

// Throws ProtocolError when the server refuses us (saying why) or fails to prove it knows the
// secret, PeerError when it closes without an answer, TimeoutError at the deadline.
void handshake_as_client(const Socket& s, uint32_t comm_id, int my_rank, int server_rank,
                         const std::string& secret, std::chrono::steady_clock::time_point deadline);

}  // namespace tcp
}  // namespace gw
