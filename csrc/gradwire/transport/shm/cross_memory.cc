#include "gradwire/transport/shm/cross_memory.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <random>

#include "gradwire/common/error.h"

namespace gw {
namespace shm {
namespace {

volatile uint64_t g_token = 0;

uint64_t draw_token() {
  std::random_device rd;
  uint64_t t = 0;
  while (t == 0) t = (uint64_t(rd()) << 32) ^ rd();
  return t;
}

// Drops the first n bytes of the ranges starting at *at.
void advance(std::vector<iovec>& v, size_t* at, size_t n) {
  while (n > 0 && *at < v.size()) {
    size_t k = std::min(n, v[*at].iov_len);
    v[*at].iov_base = static_cast<char*>(v[*at].iov_base) + k;
    v[*at].iov_len -= k;
    n -= k;
    if (v[*at].iov_len == 0) ++*at;
  }
  while (*at < v.size() && v[*at].iov_len == 0) ++*at;
}

}  // namespace

const CmaIdentity& own_cma_identity() {
  static const CmaIdentity id = [] {
    g_token = draw_token();
    CmaIdentity i;
    i.pid = uint64_t(::getpid());
    i.token_addr = reinterpret_cast<uint64_t>(&g_token);
    i.token = g_token;
    return i;
  }();
  return id;
}

std::string cma_read(uint64_t pid, uint64_t remote_addr, void* dst, size_t n) {
  char* out = static_cast<char*>(dst);
  size_t done = 0;
  while (done < n) {
    // The kernel may copy less than asked (it works page range by page range).
    iovec local{out + done, n - done};
    iovec remote{reinterpret_cast<void*>(remote_addr + done), n - done};
    ssize_t r = ::process_vm_readv(pid_t(pid), &local, 1, &remote, 1, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return str("process_vm_readv from pid ", pid, ": ", strerror(errno));
    }
    if (r == 0) return str("process_vm_readv from pid ", pid, " copied nothing");
    done += size_t(r);
  }
  return "";
}

namespace {

// Moves bytes between the local ranges and process `pid`'s ranges, in order, resuming where
// the kernel stopped (it may copy less than asked).
std::string cma_transfer(uint64_t pid, std::vector<iovec> local, std::vector<iovec> remote,
                         bool write) {
  const char* what = write ? "process_vm_writev to pid " : "process_vm_readv from pid ";
  size_t li = 0, ri = 0;
  advance(local, &li, 0);
  advance(remote, &ri, 0);
  while (li < local.size() && ri < remote.size()) {
    unsigned long nl = std::min<size_t>(local.size() - li, IOV_MAX);
    unsigned long nr = std::min<size_t>(remote.size() - ri, IOV_MAX);
    ssize_t r = write ? ::process_vm_writev(pid_t(pid), &local[li], nl, &remote[ri], nr, 0)
                      : ::process_vm_readv(pid_t(pid), &local[li], nl, &remote[ri], nr, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      return str(what, pid, ": ", strerror(errno));
    }
    if (r == 0) return str(what, pid, " copied nothing");
    advance(local, &li, size_t(r));
    advance(remote, &ri, size_t(r));
  }
  if (li < local.size() || ri < remote.size()) {
    return "single-copy transfer: local and remote ranges differ in length";
  }
  return "";
}

}  // namespace

std::string cma_readv(uint64_t pid, std::vector<iovec> local, std::vector<iovec> remote) {
  return cma_transfer(pid, std::move(local), std::move(remote), false);
}

std::string cma_writev(uint64_t pid, std::vector<iovec> local, std::vector<iovec> remote) {
  return cma_transfer(pid, std::move(local), std::move(remote), true);
}

std::string cma_verify(const CmaIdentity& id) {
  uint64_t seen = 0;
  std::string err = cma_read(id.pid, id.token_addr, &seen, sizeof(seen));
  if (!err.empty()) return err;
  if (seen != id.token)
    return str("pid ", id.pid, " is another process here (pid namespaces differ)");
  return "";
}

}  // namespace shm
}  // namespace gw
