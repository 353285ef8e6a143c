// Same-host single copy for parameter-server payloads (docs/wire-protocol.md, "Parameter
// server: single copy").
//
// Over loopback TCP every payload byte is copied twice by the kernel (into the socket buffer,
// out of it) plus the TCP stack's work. When worker and server share a host, a large payload
// travels instead as a DataRef: the owner's process identity and the addresses of the bytes in
// its memory. The receiver copies them straight into place with process_vm_readv (one copy).
//
//   worker                                      server
//   kAttach {worker identity}             ->    verifies it (reads the worker's token)
//                                         <-    {server can read worker, server identity}
//   verifies the server's identity
//   request, data by reference            ->    reads the worker's buffers into the request
//   (flag kReplyByRefOk: worker can read         before it is queued, or (a plain dense push,
//    a reply by reference)                       no log, not BSP) piece by piece while the
//                                                update consumes it (the worker's buffers stay
//                                                untouched until its reply: the client's
//                                                contract, which resends rely on too)
//                                         <-    reply, data lent by reference (lend id)
//   reads the server's buffer into place
//   kRelease {seq = lend id}              ->    frees the lent buffer
//
//   pull / push_pull with kReplyInPlace:  ->    writes the value straight into the worker's
//   the worker's destination buffers             tensor (process_vm_writev) as it produces it
//                                         <-    reply with kDataInPlace, no data (or, if the
//                                                write failed, an ordinary reply)
//
// Invariants: a side sends by reference only what the other side proved at attach it can read;
// the attach exchange finishes before any other request on the connection, so its outcome
// holds for the connection's whole life; a lent reply buffer lives until its release or the
// end of the connection. A failed read is a broken connection (the worker reconnects and
// resends; the server applies each mutation once). A server writes into a worker only through
// that worker's newest attached connection, so a request left over from a replaced connection
// never writes after the worker reconnected; a worker whose operation failed or timed out
// keeps the buffers it referenced alive (a server may still be reading or writing them).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gradwire/ps/grad_source.h"
#include "gradwire/ps/messages.h"
#include "gradwire/transport/shm/cross_memory.h"

namespace gw {
namespace ps {

// What one connection may do, fixed by the attach exchange.
struct SingleCopyCaps {
  bool send_by_ref = false;  // the peer reads our memory: send large data by reference
  bool read_by_ref = false;  // we read the peer's memory: it may send us data by reference
};

// Bytes in the memory of the process `owner`. On the wire (8-byte aligned):
//   u64 pid | u64 token_addr | u64 token | u64 lend_id | u64 nseg | nseg x (u64 addr, u64 len)
struct DataRef {
  shm::CmaIdentity owner;
  uint64_t lend_id = 0;  // replies: the id the worker releases; requests: 0
  std::vector<iovec> segments;

  uint64_t bytes() const;
  std::string encode() const;
  // The encoded size of a reference with `nseg` segments.
  static size_t wire_bytes(uint64_t nseg) { return 40 + 16 * nseg; }
  // The segment count of an encoded reference, from its first wire_bytes(0) bytes (a reader
  // that takes the record off a stream learns from it how much more to read).
  static uint64_t segment_count(const char* head);
  // Throws ProtocolError when the record is malformed or claims more than kMaxMessageBytes.
  static DataRef decode(const char* p, size_t n);
};

// Reads the referenced bytes into `into` (the same number of bytes); "" or the reason.
std::string read_ref(const DataRef& ref, const std::vector<iovec>& into);

// Writes a reply's data, in order, into the worker buffers a request's reply destination
// names, one process_vm_writev per call.
class InPlaceWriter {
 public:
  explicit InPlaceWriter(DataRef dest) : dest_(std::move(dest)), total_(dest_.bytes()) {}
  uint64_t capacity() const { return total_; }
  uint64_t written() const { return written_; }
  // Writes the next n bytes; "" or the reason (writing past the capacity is one).
  std::string write(const void* p, size_t n);

 private:
  DataRef dest_;
  uint64_t total_;
  uint64_t written_ = 0;
  size_t seg_ = 0, seg_off_ = 0;  // the write position in dest_.segments
};

// A push's gradient read from the worker's memory in chunks of kChunkBytes as the update asks
// for it (the chunk stays in cache until the update consumes it), instead of into the request
// before it is queued. A failed read throws PeerError.
class RemoteGradSource final : public GradSource {
 public:
  RemoteGradSource(const DataRef& ref, std::string peer_name);
  size_t elems() const override { return elems_; }
  const float* piece(size_t off, size_t n) override;
  static constexpr size_t kChunkBytes = 256 << 10;

 private:
  DataRef ref_;
  std::string peer_;
  size_t elems_;
  std::vector<float> chunk_;
  size_t chunk_off_ = 0, chunk_len_ = 0;  // elements of the gradient held in chunk_
  size_t seg_ = 0, seg_off_ = 0;          // the read position in ref_.segments
};

// Attach request meta (worker -> server) and reply meta (server -> worker).
std::string encode_identity(const shm::CmaIdentity& id);
shm::CmaIdentity decode_identity(Reader& r);

}  // namespace ps
}  // namespace gw
