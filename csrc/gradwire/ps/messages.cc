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
  }
  return "unknown";
}

bool is_known_op(uint32_t op) {
  return op >= uint32_t(PsOp::kRegisterDense) && op <= uint32_t(PsOp::kCheckpoint);
}

std::string payload_prefix(size_t meta_bytes) {
  std::string s(kPayloadPrefix, '\0');
  uint32_t m = uint32_t(meta_bytes);
  memcpy(&s[0], &m, 4);
  return s;
}

void split_payload(Message* m) {
  if (m->payload.size() < kPayloadPrefix) {
    GW_THROW(ProtocolError, "parameter-server payload of ", m->payload.size(),
             " bytes is shorter than its prefix");
  }
  uint32_t meta = 0, zero = 0;
  memcpy(&meta, m->payload.data(), 4);
  memcpy(&zero, m->payload.data() + 4, 4);
  if (zero != 0 || meta % 8 != 0 || meta > m->payload.size() - kPayloadPrefix) {
    GW_THROW(ProtocolError, "parameter-server payload: bad meta length ", meta, " in ",
             m->payload.size(), " bytes");
  }
  m->meta_bytes = meta;
}

}  // namespace ps
}  // namespace gw
