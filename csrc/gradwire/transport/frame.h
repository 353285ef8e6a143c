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

FrameHeader make_header(FrameType type, uint32_t comm_id, int src_rank, const MsgKey& key,
                        const OpFingerprint& fp, uint64_t offset, uint64_t length,
                        uint64_t msg_bytes);
OpFingerprint header_fingerprint(const FrameHeader& h);

// Largest message a frame may announce; a header claiming more is malformed.
constexpr uint64_t kMaxMessageBytes = 1ull << 40;

// Checks a received header; returns an empty string when valid, else what is wrong.
std::string validate_header(const FrameHeader& h, uint32_t comm_id, int expected_src);

}  // namespace gw
