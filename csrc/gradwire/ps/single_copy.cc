#include "gradwire/ps/single_copy.h"

#include <algorithm>

#include "gradwire/transport/frame.h"

namespace gw {
namespace ps {
namespace {

// The next `bytes` of the referenced memory from position (*seg, *off), which advances; the
// caller keeps within ref.bytes().
std::vector<iovec> next_ranges(const DataRef& ref, size_t* seg, size_t* off, size_t bytes) {
  std::vector<iovec> out;
  while (bytes > 0) {
    const iovec& s = ref.segments[*seg];
    size_t k = std::min(bytes, s.iov_len - *off);
    out.push_back({static_cast<char*>(s.iov_base) + *off, k});
    bytes -= k;
    *off += k;
    if (*off == s.iov_len) {
      ++*seg;
      *off = 0;
    }
  }
  return out;
}

}  // namespace

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

uint64_t DataRef::segment_count(const char* head) {
  Reader r(head, wire_bytes(0));
  for (int field = 0; field < 4; ++field) r.u64();  // pid, token_addr, token, lend_id
  return r.u64();
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
  std::vector<iovec> remote = next_ranges(dest_, &seg_, &seg_off_, n);
  written_ += n;
  return shm::cma_writev(dest_.owner.pid, {{const_cast<void*>(p), n}}, remote);
}

RemoteGradSource::RemoteGradSource(const DataRef& ref, std::string peer_name)
    : ref_(ref), peer_(std::move(peer_name)), elems_(ref.bytes() / sizeof(float)) {
  if (ref.bytes() % sizeof(float) != 0) {
    GW_THROW(InvalidArgument, "a dense push of ", ref.bytes(), " bytes is not float32 elements");
  }
}

const float* RemoteGradSource::piece(size_t off, size_t n) {
  if (off >= chunk_off_ && off + n <= chunk_off_ + chunk_len_) {
    return chunk_.data() + (off - chunk_off_);
  }
  if (off != chunk_off_ + chunk_len_ || n > elems_ - off) {
    GW_THROW(Error, "gradient pieces must be asked for in order, within the gradient");
  }
  // Read the next chunk (at least this piece) from where the last one ended.
  size_t len = std::min(elems_ - off, std::max(n, kChunkBytes / sizeof(float)));
  if (chunk_.size() < len) chunk_.resize(len);
  std::vector<iovec> remote = next_ranges(ref_, &seg_, &seg_off_, len * sizeof(float));
  std::string why = shm::cma_readv(ref_.owner.pid, {{chunk_.data(), len * sizeof(float)}}, remote);
  if (!why.empty()) GW_THROW(PeerError, "single-copy read from ", peer_, ": ", why);
  chunk_off_ = off;
  chunk_len_ = len;
  return chunk_.data();
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
