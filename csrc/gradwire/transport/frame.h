// The frame that carries every byte between two ranks (docs/wire-protocol.md).
//
// A message is identified by its key (seq, tag): seq is the op's sequence number in the
// communicator (p2p messages use a separate per-peer counter with the top bit set), tag the
// step/chunk within the op. A message may be cut into several frames; each frame says where its
// payload lands (offset) inside the message (msg_bytes long). Every frame carries the op
// fingerprint of its sender so the receiver detects ranks that run different collectives.
#pragma once

#include <cstdint>
#include <string>

#include "gradwire/common/dtype.h"

namespace gw {

constexpr uint32_t kFrameMagic = 0x31525747;  // "GWR1" little-endian
constexpr uint16_t kProtocolVersion = 1;
constexpr uint64_t kP2PSeqBit = 1ull << 63;

enum class FrameType : uint8_t {
  kData = 1,        // payload bytes of a message
  kAbort = 2,       // payload: UTF-8 reason; the sender's communicator is unusable
  kProbe = 3,       // "which op are you in?" sent by a rank whose wait timed out
  kProbeReply = 4,  // seq = the replier's current op seq, tag = 1 if it is inside that op
  kPsRequest = 5,   // parameter server: seq = request id, tag = PsOp (ps/messages.h)
  kPsReply = 6,     // parameter server: seq = the request's id, tag = PsStatus
  // Single-copy messages between processes on one host (stream_transport_cma.cc): the sender
  // offers its buffer, the receiver reads it with process_vm_readv and answers DONE, or REFUSE
  // when it cannot read the sender's memory (the sender then sends DATA frames instead).
  kCmaOffer = 7,   // payload: CmaOffer; msg_bytes = the message's size
  kCmaDone = 8,    // the receiver has the whole message; the sender may reuse its buffer
  kCmaRefuse = 9,  // the receiver cannot read this sender's memory
};

enum class OpKind : uint8_t {
  kNone = 0,
  kAllreduce = 1,
  kBroadcast = 2,
  kReduce = 3,
  kAllgather = 4,
  kReduceScatter = 5,
  kAlltoall = 6,
  kGather = 7,
  kScatter = 8,
  kBarrier = 9,
  kSendRecv = 10,
};
const char* op_kind_name(OpKind k);

// Compressed collectives keep their dense op kind and carry the codec in `root`:
// root = kCompressedRootBase - codec kind, so ranks that disagree on the codec fail the op.
constexpr int32_t kCompressedRootBase = -2;

// What an op is, as seen by every rank that takes part. Ranks must agree on all fields.
struct OpFingerprint {
  OpKind kind = OpKind::kNone;
  DType dtype = DType::kUInt8;
  uint8_t redop = 0;
  int32_t root = -1;
  uint64_t count = 0;  // elements per rank; 0 where ranks may legitimately differ (alltoall)

  bool operator==(const OpFingerprint& o) const {
    return kind == o.kind && dtype == o.dtype && redop == o.redop && root == o.root &&
           count == o.count;
  }
  bool operator!=(const OpFingerprint& o) const { return !(*this == o); }
  std::string describe() const;  // "allreduce(float32 x 1000, SUM)"
};

struct MsgKey {
  uint64_t seq = 0;
  uint32_t tag = 0;
  bool operator==(const MsgKey& o) const { return seq == o.seq && tag == o.tag; }
};

// Fixed 72-byte little-endian header; payload (length bytes) follows.
#pragma pack(push, 1)
struct FrameHeader {
  uint32_t magic;
  uint16_t version;
  uint8_t type;     // FrameType
  uint8_t fp_kind;  // OpFingerprint, flattened
  uint32_t comm_id;
  int32_t src_rank;
  uint64_t seq;
  uint32_t tag;
  uint8_t fp_dtype;
  uint8_t fp_redop;
  uint16_t reserved;
  int32_t fp_root;
  uint32_t reserved2;
  uint64_t fp_count;
  uint64_t offset;
  uint64_t length;
  uint64_t msg_bytes;
};
#pragma pack(pop)
static_assert(sizeof(FrameHeader) == 72, "frame header must be 72 bytes");

// Payload of a CMA_OFFER frame: who the sender is (shm/cross_memory.h) and where its buffer is.
#pragma pack(push, 1)
struct CmaOffer {
  uint64_t pid;
  uint64_t token_addr;
  uint64_t token;
  uint64_t data_addr;
};
#pragma pack(pop)
static_assert(sizeof(CmaOffer) == 32, "CMA offer must be 32 bytes");

FrameHeader make_header(FrameType type, uint32_t comm_id, int src_rank, const MsgKey& key,
                        const OpFingerprint& fp, uint64_t offset, uint64_t length,
                        uint64_t msg_bytes);
// The fingerprint carried by a frame header, or by any header with the same fp_* fields (the
// shared-memory mailbox's, shm/mailbox.h).
template <typename Header>
OpFingerprint header_fingerprint(const Header& h) {
  OpFingerprint fp;
  fp.kind = static_cast<OpKind>(h.fp_kind);
  fp.dtype = static_cast<DType>(h.fp_dtype);
  fp.redop = h.fp_redop;
  fp.root = h.fp_root;
  fp.count = h.fp_count;
  return fp;
}

// Largest message a frame may announce; a header claiming more is malformed.
constexpr uint64_t kMaxMessageBytes = 1ull << 40;

// Checks a received header; returns an empty string when valid, else what is wrong.
// Collective frames only: parameter-server frame types are rejected here.
std::string validate_header(const FrameHeader& h, uint32_t comm_id, int expected_src);

// Parameter-server connections carry whole messages in single frames under this id
// (docs/wire-protocol.md, "Parameter server").
constexpr uint32_t kPsCommId = 0x53505747;  // "GWPS"
std::string validate_ps_header(const FrameHeader& h, FrameType expected, int expected_src);

}  // namespace gw
