// Single-copy transfers between processes on one host: the receiver reads the sender's buffer
// directly (Linux cross-memory attach, process_vm_readv), instead of the sender copying into a
// shared ring and the receiver copying out of it. Permitted when the reader may ptrace the
// target (same user; not blocked by Yama or a seccomp profile), which is probed per peer.
//
// A pid alone does not name a process safely: peers may live in different pid namespaces that
// share a network namespace (containers of one pod). Every process therefore publishes a random
// token at a known address; a reader first reads that token through the pid and compares it
// with the value the sender announced, and uses the pid only when they agree.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace gw {
namespace shm {

struct CmaIdentity {
  uint64_t pid = 0;
  uint64_t token_addr = 0;  // address of the token in that process
  uint64_t token = 0;
};

// This process's identity (the token is drawn once per process).
const CmaIdentity& own_cma_identity();

// "" when `id.pid` is the process that announced `id`, else why it is not (or cannot be read).
std::string cma_verify(const CmaIdentity& id);

// Copies n bytes at `remote_addr` in process `pid` to `dst`; "" on success, else the reason.
std::string cma_read(uint64_t pid, uint64_t remote_addr, void* dst, size_t n);

// Gathers the remote ranges of process `pid` into the local ranges, in order; both lists
// cover the same number of bytes. "" on success, else the reason.
std::string cma_readv(uint64_t pid, std::vector<iovec> local, std::vector<iovec> remote);

// Scatters the local ranges into the remote ranges of process `pid` (process_vm_writev; the
// same permission as reading). "" on success, else the reason.
std::string cma_writev(uint64_t pid, std::vector<iovec> local, std::vector<iovec> remote);

}  // namespace shm
}  // namespace gw
