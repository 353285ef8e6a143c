#include "gradwire/transport/frame.h"

#include "gradwire/common/error.h"

namespace gw {

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::kNone:
      return "none";
    case OpKind::kAllreduce:
      return "allreduce";
    case OpKind::kBroadcast:
      return "broadcast";
    case OpKind::kReduce:
      return "reduce";
    case OpKind::kAllgather:
      return "allgather";
    case OpKind::kReduceScatter:
      return "reduce_scatter";
    case OpKind::kAlltoall:
      return "alltoall";
    case OpKind::kGather:
      return "gather";
    case OpKind::kScatter:
      return "scatter";
    case OpKind::kBarrier:
      return "barrier";
    case OpKind::kSendRecv:
      return "send/recv";
  }
  return "unknown";
}

namespace {
// The codec numbers of compressed fingerprints (docs/wire-protocol.md, "Compressed
// collectives"; the same numbering as compress/codec.h's CodecKind).
std::string codec_name(int32_t number) {
  static const char* const kByNumber[] = {nullptr, "fp16", "bf16", "int8",    "int4",
                                          "sign",  "qsgd", "topk", "randomk", "threshold"};
  if (number >= 1 && number <= 9) return kByNumber[number];
  return str("#", number);
}
}  // namespace

std::string OpFingerprint::describe() const {
  std::string s = str(op_kind_name(kind), "(", dtype_name(dtype), " x ", count);
  if (kind == OpKind::kAllreduce || kind == OpKind::kReduce || kind == OpKind::kReduceScatter) {
    s += str(", ", reduce_op_name(static_cast<ReduceOp>(redop)));
  }
  if (root >= 0) s += str(", root=", root);
  if (root <= kCompressedRootBase) s += str(", codec ", codec_name(kCompressedRootBase - root));
  return s + ")";
}

FrameHeader make_header(FrameType type, uint32_t comm_id, int src_rank, const MsgKey& key,
                        const OpFingerprint& fp, uint64_t offset, uint64_t length,
                        uint64_t msg_bytes) {
  FrameHeader h{};
  h.magic = kFrameMagic;
  h.version = kProtocolVersion;
  h.type = uint8_t(type);
  h.fp_kind = uint8_t(fp.kind);
  h.comm_id = comm_id;
  h.src_rank = src_rank;
  h.seq = key.seq;
  h.tag = key.tag;
  h.fp_dtype = uint8_t(fp.dtype);
  h.fp_redop = fp.redop;
  h.fp_root = fp.root;
  h.fp_count = fp.count;
  h.offset = offset;
  h.length = length;
  h.msg_bytes = msg_bytes;
  return h;
}

namespace {

std::string check_magic_version(const FrameHeader& h) {
  if (h.magic != kFrameMagic) return str("bad magic 0x", std::hex, h.magic);
  if (h.version != kProtocolVersion) {
    return str("protocol version ", h.version, " (this build speaks ", kProtocolVersion, ")");
  }
  return "";
}

}  // namespace

std::string validate_ps_header(const FrameHeader& h, FrameType expected, int expected_src) {
  std::string bad = check_magic_version(h);
  if (!bad.empty()) return bad;
  if (h.type != uint8_t(expected)) {
    return str("frame type ", int(h.type), " where a parameter-server ",
               expected == FrameType::kPsRequest ? "request" : "reply", " was expected");
  }
  if (h.comm_id != kPsCommId) return str("not a parameter-server frame (id ", h.comm_id, ")");
  if (h.src_rank != expected_src) {
    return str("source rank ", h.src_rank, " on the connection of rank ", expected_src);
  }
  if (h.msg_bytes > kMaxMessageBytes) return str("message size ", h.msg_bytes, " too large");
  if (h.offset != 0 || h.length != h.msg_bytes) {
    return "parameter-server messages travel in one frame (offset 0, length = message size)";
  }
  return "";
}

std::string validate_header(const FrameHeader& h, uint32_t comm_id, int expected_src) {
  std::string bad = check_magic_version(h);
  if (!bad.empty()) return bad;
  bool known =
      (h.type >= uint8_t(FrameType::kData) && h.type <= uint8_t(FrameType::kProbeReply)) ||
      (h.type >= uint8_t(FrameType::kCmaOffer) && h.type <= uint8_t(FrameType::kCmaRefuse));
  if (!known) return str("unknown frame type ", int(h.type));
  if (h.comm_id != comm_id) return str("communicator id ", h.comm_id, " (expected ", comm_id, ")");
  if (h.src_rank != expected_src) {
    return str("source rank ", h.src_rank, " on the connection of rank ", expected_src);
  }
  if (h.fp_kind > uint8_t(OpKind::kSendRecv)) return str("unknown op kind ", int(h.fp_kind));
  if (h.fp_dtype >= kNumDTypes) return str("unknown dtype ", int(h.fp_dtype));
  if (h.msg_bytes > kMaxMessageBytes) return str("message size ", h.msg_bytes, " too large");
  if (h.type == uint8_t(FrameType::kCmaOffer)) {
    if (h.length != sizeof(CmaOffer) || h.offset != 0) return "malformed CMA offer";
    return "";
  }
  if ((h.type == uint8_t(FrameType::kCmaDone) || h.type == uint8_t(FrameType::kCmaRefuse)) &&
      h.length != 0) {
    return "CMA replies carry no payload";
  }
  if (h.length > h.msg_bytes || h.offset > h.msg_bytes - h.length) {
    return str("payload [", h.offset, ", +", h.length, ") outside a message of ", h.msg_bytes,
               " bytes");
  }
  if (h.type == uint8_t(FrameType::kAbort) && h.length > 65536) return "abort reason too long";
  if ((h.type == uint8_t(FrameType::kProbe) || h.type == uint8_t(FrameType::kProbeReply)) &&
      h.length != 0) {
    return "probe frames carry no payload";
  }
  return "";
}

}  // namespace gw
