// Mutual authentication of a new connection with a shared job secret (docs/wire-protocol.md).
//
//   server -> client  HELLO  magic, version, comm_id, server_rank, server_nonce[16]
//   client -> server  AUTH   magic, version, comm_id, client_rank, client_nonce[16],
//                            HMAC(secret, "gw-client" | comm | ranks | nonces)
//   server -> client  OK     magic, version, HMAC(secret, "gw-server" | comm | ranks | nonces)
//
// A server that cannot verify AUTH logs the refusal and closes without answering; the client
// verifies OK so it never talks to an impostor listening on a reused port.
#pragma once

#include <chrono>
#include <string>

#include "gradwire/transport/tcp/socket.h"

namespace gw {
namespace tcp {

// Returns the authenticated client's rank; throws ProtocolError when it fails to authenticate.
int handshake_as_server(const Socket& s, uint32_t comm_id, int my_rank, int world_size,
                        const std::string& secret, std::chrono::steady_clock::time_point deadline);

void handshake_as_client(const Socket& s, uint32_t comm_id, int my_rank, int server_rank,
                         const std::string& secret, std::chrono::steady_clock::time_point deadline);

}  // namespace tcp
}  // namespace gw
