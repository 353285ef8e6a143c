// Builds a communicator's connections: every pair of ranks gets an authenticated TCP connection
// (addresses exchanged through the store, rendezvous.h; the higher rank dials the lower one). Pairs
// on the same host (same hostname, boot id and network namespace) then upgrade to shared-memory
// rings, the socket staying open as the liveness signal. GRADWIRE_TRANSPORT=tcp turns the upgrade
// off; =shm makes a peer that cannot use shared memory an error.
#pragma once

#include <memory>
#include <string>

#include "gradwire/transport/rendezvous.h"
#include "gradwire/transport/stream_transport.h"

namespace gw {

struct MeshOptions {
  uint32_t comm_id = 0;
  std::string secret;       // job secret for the handshake
  std::string listen_host;  // numeric address to bind and advertise
  Clock::time_point deadline;
  std::string transport = "auto";  // auto | tcp | shm
  size_t shm_ring_bytes = 4 << 20;
  size_t mailbox_bytes = 4 << 10;  // small-message mailbox per same-host peer (0: none)
  StreamOptions stream;
};

// Throws StaleRendezvous when this rank read an earlier set-up's keys (rendezvous.h): the caller
// opens a new Rendezvous and tries again.
std::unique_ptr<StreamTransport> build_mesh(const Rendezvous& rv, int rank, int size,
                                            const MeshOptions& opts, std::string* listen_address);

// hostname|boot id|network namespace: equal strings mean shared memory can connect the two.
std::string local_host_id();

}  // namespace gw
