// Parameter-server messages (docs/wire-protocol.md, "Parameter server").
//
// Every request and reply is one frame (FrameType kPsRequest / kPsReply, comm id kPsCommId)
// whose payload is
//
//   u32 meta_bytes | u32 flags | meta (meta_bytes, a multiple of 8) | data
//
// meta is a small record encoded with Writer/Reader (little-endian scalars, length-prefixed
// strings and vectors); data is raw float32 / int64 arrays, 8-byte aligned inside the payload,
// so a receiver can use them in place and a sender can gather them from the caller's tensors.
// A request's header carries seq = request id (unique per client session) and tag = PsOp; the
// reply echoes seq and puts a PsStatus in tag; an error reply's meta is the message. With
// kPayloadByRef in flags, data is a reference to the bytes in the sender's memory, which a
// same-host receiver reads with one kernel copy (ps/single_copy.h).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "gradwire/common/error.h"

namespace gw {
namespace ps {

enum class PsOp : uint32_t {
  kRegisterDense = 1,
  kRegisterSparse = 2,
  kPush = 3,
  kPull = 4,
  kPushPull = 5,
  kPushRows = 6,
  kPullRows = 7,
  kClock = 8,
  kCheckpoint = 9,
  // Connection control, handled by the connection's reader and never queued or logged:
  kAttach = 10,   // first request on a connection: negotiates single copy (ps/single_copy.h)
  kRelease = 11,  // no reply: the worker has read the reply lent under id = seq
};
const char* op_name(PsOp op);
// The queued request ops (kRegisterDense .. kCheckpoint); connection control is not one.
bool is_known_op(uint32_t op);

// Requests that change server state: they are deduplicated by (session, seq), written to the
// write-ahead log and acknowledged only once the log record is written.
inline bool is_mutation(PsOp op) {
  return op == PsOp::kRegisterDense || op == PsOp::kRegisterSparse || op == PsOp::kPush ||
         op == PsOp::kPushPull || op == PsOp::kPushRows || op == PsOp::kClock;
}

enum class PsStatus : uint32_t {
  kOk = 0,
  kInvalidArgument = 1,  // bad request: unknown key, wrong shape/dtype, id out of range, ...
  kInternal = 2,
  kProtocol = 3,
};

// Every request's meta starts with this.
struct RequestHead {
  uint64_t session = 0;  // random per client object: dedup survives worker restarts
  uint32_t worker = 0;
  uint64_t clock = 0;  // the worker's clock when it issued the request
  // Mutations only: 1, 2, 3, ... per (session, server); 0 for reads. A server applies a
  // mutation only if its mseq is above the last one it applied for the session, so a request
  // resent after a reconnect is applied exactly once.
  uint64_t mseq = 0;
  std::string key;  // dense tensor name or sparse table name ("" for clock/checkpoint)
};

class Writer {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void i64(int64_t v) { raw(&v, 8); }
  void f64(double v) { raw(&v, 8); }
  void str(const std::string& s) {
    u64(s.size());
    raw(s.data(), s.size());
  }
  void i64s(const std::vector<int64_t>& v) {
    u64(v.size());
    raw(v.data(), v.size() * 8);
  }
  void raw(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  void head(const RequestHead& h) {
    u64(h.session);
    u32(h.worker);
    u64(h.clock);
    u64(h.mseq);
    str(h.key);
  }
  // The meta block padded to a multiple of 8 bytes.
  std::string finish() {
    std::string out = std::move(buf_);
    out.resize((out.size() + 7) / 8 * 8, '\0');
    return out;
  }

 private:
  std::string buf_;
};

// Bounds-checked decoding; a short or inconsistent message is a ProtocolError.
class Reader {
 public:
  Reader(const char* p, size_t n) : p_(p), n_(n) {}
  uint32_t u32() { return scalar<uint32_t>(); }
  uint64_t u64() { return scalar<uint64_t>(); }
  int64_t i64() { return scalar<int64_t>(); }
  double f64() { return scalar<double>(); }
  std::string str() {
    uint64_t n = u64();
    const char* p = take(n);
    return std::string(p, n);
  }
  std::vector<int64_t> i64s() {
    uint64_t n = u64();
    if (n > (n_ - pos_) / 8) {
      GW_THROW(ProtocolError, "parameter-server message: vector of ", n,
               " elements longer than the message");
    }
    std::vector<int64_t> v(n);
    memcpy(v.data(), take(n * 8), n * 8);
    return v;
  }
  RequestHead head() {
    RequestHead h;
    h.session = u64();
    h.worker = u32();
    h.clock = u64();
    h.mseq = u64();
    h.key = str();
    return h;
  }
  size_t remaining() const { return n_ - pos_; }
  const char* take(size_t n) {
    if (n > n_ - pos_) {
      GW_THROW(ProtocolError, "truncated parameter-server message (needed ", n, " bytes at offset ",
               pos_, " of ", n_, ")");
    }
    const char* p = p_ + pos_;
    pos_ += n;
    return p;
  }

 private:
  template <typename T>
  T scalar() {
    T v;
    memcpy(&v, take(sizeof(T)), sizeof(T));
    return v;
  }
  const char* p_;
  size_t n_;
  size_t pos_ = 0;
};

// A byte buffer whose resize() leaves new bytes uninitialized: message payloads are about to
// be overwritten by recv() or memcpy, and zero-filling megabytes first costs as much as the copy.
template <typename T>
struct UninitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = UninitAllocator<U>;
  };
  UninitAllocator() = default;
  template <typename U>
  UninitAllocator(const UninitAllocator<U>&) {}
  template <typename U>
  void construct(U* p) {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using Bytes = std::vector<char, UninitAllocator<char>>;

// Payload framing helpers: [u32 meta_bytes][u32 flags][meta][data].
constexpr size_t kPayloadPrefix = 8;
constexpr uint32_t kPayloadByRef = 1;  // data is a DataRef (ps/single_copy.h), not the bytes
constexpr uint32_t kReplyByRefOk = 2;  // request: the worker can read a reply by reference
// Request: the data section starts with a DataRef naming the worker's buffers for the reply's
// data, which the server may write in place (ps/single_copy.h).
constexpr uint32_t kReplyInPlace = 4;
constexpr uint32_t kDataInPlace = 8;  // reply: the data was written in place; none follows
constexpr uint32_t kKnownPayloadFlags =
    kPayloadByRef | kReplyByRefOk | kReplyInPlace | kDataInPlace;
std::string payload_prefix(size_t meta_bytes, uint32_t flags = 0);

struct DataRef;

// A received message: its header, and the payload split into meta and data.
struct Message {
  uint64_t seq = 0;
  uint32_t tag = 0;
  Bytes payload;
  size_t meta_bytes = 0;
  uint32_t flags = 0;  // the prefix's flags as received
  // kReplyInPlace: where the reply's data may be written (not part of the payload, so not of
  // the write-ahead-log record either).
  std::shared_ptr<DataRef> reply_dest;
  // A dense push whose data the server reads from the worker's memory while applying it (no
  // write-ahead log, not BSP): the data section is then empty.
  std::shared_ptr<DataRef> push_ref;
  const char* meta() const { return payload.data() + kPayloadPrefix; }
  const char* data() const { return payload.data() + kPayloadPrefix + meta_bytes; }
  size_t data_bytes() const { return payload.size() - kPayloadPrefix - meta_bytes; }
};
// Splits a request payload that was read whole; throws ProtocolError when the prefix is
// inconsistent (a request's meta is a multiple of 8 bytes; an error reply's is its message).
void split_payload(Message* m);
// Reads a prefix; throws ProtocolError for unknown flags or a meta length beyond `payload`.
void parse_prefix(const char* prefix, uint64_t payload, uint32_t* meta_bytes, uint32_t* flags);

}  // namespace ps
}  // namespace gw
