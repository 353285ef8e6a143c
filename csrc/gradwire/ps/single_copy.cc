#include "gradwire/ps/single_copy.h"

#include "gradwire/transport/frame.h"

namespace gw {
namespace ps {

uint64_t DataRef::bytes() const {
  uint64_t n = 0;
  for (const iovec& s : segments) n += s.iov_len;
  return n;
}

std::string DataRef::encode() const {
  Writer w;
  w.u64(owner.pid);
  w.u64(owner.token_addr);
  w.u64(owner.token);
  w.u64(lend_id);
  w.u64(segments.size());
  for (const iovec& s : segments) {
    w.u64(reinterpret_cast<uint64_t>(s.iov_base));
    w.u64(s.iov_len);
  }
  return w.finish();
}

DataRef DataRef::decode(const char* p, size_t n) {
  Reader r(p, n);
  DataRef ref;
  ref.owner.pid = r.u64();
  ref.owner.token_addr = r.u64();
  ref.owner.token = r.u64();
  ref.lend_id = r.u64();
  uint64_t nseg = r.u64();
  if (nseg > (n - 40) / 16) {
    GW_THROW(ProtocolError, "parameter-server data reference: ", nseg, " segments do not fit its ",
             n, " bytes");
  }
  ref.segments.resize(nseg);
  uint64_t total = 0;
  for (iovec& s : ref.segments) {
    s.iov_base = reinterpret_cast<void*>(r.u64());
    s.iov_len = r.u64();
    if (s.iov_len > kMaxMessageBytes - total) {
      GW_THROW(ProtocolError, "parameter-server data reference of more than ", kMaxMessageBytes,
               " bytes");
    }
    total += s.iov_len;
  }
  return ref;
}

std::string read_ref(const DataRef& ref, const std::vector<iovec>& into) {
  return shm::cma_readv(ref.owner.pid, into, ref.segments);
}

std::string InPlaceWriter::write(const void* p, size_t n) {
  if (n > total_ - written_) {
    return str("a reply of more than the ", total_, " bytes its destination holds");
  }
  std::vector<iovec> remote;
  for (size_t left = n; left > 0;) {
    const iovec& s = dest_.segments[seg_];
    size_t k = std::min(left, s.iov_len - seg_off_);
    remote.push_back({static_cast<char*>(s.iov_base) + seg_off_, k});
    left -= k;
    seg_off_ += k;
    if (seg_off_ == s.iov_len) {
      ++seg_;
      seg_off_ = 0;
    }
  }
  written_ += n;
  return shm::cma_writev(dest_.owner.pid, {{const_cast<void*>(p), n}}, remote);
}

std::string encode_identity(const shm::CmaIdentity& id) {
  Writer w;
  w.u64(id.pid);
  w.u64(id.token_addr);
  w.u64(id.token);
  return w.finish();
}

shm::CmaIdentity decode_identity(Reader& r) {
  shm::CmaIdentity id;
  id.pid = r.u64();
  id.token_addr = r.u64();
  id.token = r.u64();
  return id;
}

}  // namespace ps
}  // namespace gw
