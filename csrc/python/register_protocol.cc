// Wire-protocol helpers exposed for tests (the frame parser is fuzzed from Python).
#include <cstring>

#include "gradwire/common/error.h"
#include "gradwire/transport/frame.h"
#include "py_common.h"

namespace gw {

void register_protocol(py::module_& m) {
  m.attr("FRAME_HEADER_BYTES") = sizeof(FrameHeader);
  m.attr("PROTOCOL_VERSION") = kProtocolVersion;
  m.def(
      "_make_data_header",
      [](uint32_t comm_id, int src, uint64_t seq, uint32_t tag, int kind, int dtype, uint64_t count,
         uint64_t offset, uint64_t length, uint64_t msg_bytes) {
        OpFingerprint fp;
        fp.kind = static_cast<OpKind>(kind);
        fp.dtype = static_cast<DType>(dtype);
        fp.count = count;
        FrameHeader h = make_header(FrameType::kData, comm_id, src, MsgKey{seq, tag}, fp, offset,
                                    length, msg_bytes);
        return py::bytes(reinterpret_cast<const char*>(&h), sizeof(h));
      },
      "A DATA frame header as the engine sends it.");
  m.def(
      "_validate_header",
      [](py::bytes raw, uint32_t comm_id, int expected_src) {
        std::string b = raw;
        GW_CHECK_ARG(b.size() == sizeof(FrameHeader), "a header is ", sizeof(FrameHeader),
                     " bytes, got ", b.size());
        FrameHeader h;
        memcpy(&h, b.data(), sizeof(h));
        return validate_header(h, comm_id, expected_src);
      },
      "'' when the header is valid for this communicator and sender, else what is wrong.");
}

}  // namespace gw
