#include "gradwire/ps/messages.h"

namespace gw {
namespace ps {

const char* op_name(PsOp op) {
  switch (op) {
    case PsOp::kRegisterDense:
      return "register_dense";
    case PsOp::kRegisterSparse:
      return "register_sparse";
    case PsOp::kPush:
      return "push";
    case PsOp::kPull:
      return "pull";
    case PsOp::kPushPull:
      return "push_pull";
    case PsOp::kPushRows:
      return "push_rows";
    case PsOp::kPullRows:
      return "pull_rows";
    case PsOp::kClock:
      return "clock";
    case PsOp::kCheckpoint:
      return "checkpoint";
    case PsOp::kAttach:
      return "attach";
    case PsOp::kRelease:
      return "release";
  }
  return "unknown";
}

bool is_known_op(uint32_t op) {
  return op >= uint32_t(PsOp::kRegisterDense) && op <= uint32_t(PsOp::kCheckpoint);
}

std::string payload_prefix(size_t meta_bytes, uint32_t flags) {
  std::string s(kPayloadPrefix, '\0');
  uint32_t m = uint32_t(meta_bytes);
  memcpy(&s[0], &m, 4);
  memcpy(&s[4], &flags, 4);
  return s;
}

void parse_prefix(const char* prefix, uint64_t payload, uint32_t* meta_bytes, uint32_t* flags) {
  uint32_t meta = 0, f = 0;
  memcpy(&meta, prefix, 4);
  memcpy(&f, prefix + 4, 4);
  if ((f & ~kKnownPayloadFlags) != 0) {
    GW_THROW(ProtocolError, "parameter-server payload: unknown flags 0x", std::hex, f);
  }
  if (payload < kPayloadPrefix || meta > payload - kPayloadPrefix) {
    GW_THROW(ProtocolError, "parameter-server payload: bad meta length ", meta, " in ", payload,
             " bytes");
  }
  *meta_bytes = meta;
  *flags = f;
}

void split_payload(Message* m) {
  if (m->payload.size() < kPayloadPrefix) {
    GW_THROW(ProtocolError, "parameter-server payload of ", m->payload.size(),
             " bytes is shorter than its prefix");
  }
  uint32_t meta = 0, flags = 0;
  parse_prefix(m->payload.data(), m->payload.size(), &meta, &flags);
  if (meta % 8 != 0) {
    GW_THROW(ProtocolError, "parameter-server payload: meta length ", meta,
             " is not a multiple of 8");
  }
  if (flags & (kPayloadByRef | kReplyInPlace)) {
    GW_THROW(ProtocolError, "parameter-server payload: a by-reference payload was not resolved");
  }
  m->meta_bytes = meta;
  m->flags = flags;
}

}  // namespace ps
}  // namespace gw
