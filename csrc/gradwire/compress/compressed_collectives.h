// Collectives on compressed payloads. Like the dense collectives they run inside one op, see only
// an OpContext and float32 buffers, and return when this rank's part is complete.
//
// Algorithm by codec kind (docs/compression.md):
//  * quantized (fp16, bf16, int8, int4, sign, qsgd): ring reduce-scatter whose every hop decodes
//    the incoming segment, adds it, and re-encodes the partial sum; then a ring allgather in which
//    each segment is encoded once by its owner and forwarded as is, so every rank decodes the same
//    bytes and ends with bit-identical results (quantized_ring.h: chunk by chunk, each pass
//    right before its chunk is needed).
//  * random-k: the k values at indices every rank derives from (seed, op sequence number) go
//    through a dense allreduce; no index travels.
//  * top-k, threshold: each rank sends its (index, value) pairs to every peer (sizes first, as
//    they may differ), and every rank sums all pairs in rank order.
// Error feedback (error_feedback.h) is applied once to this rank's input when `residuals` is set.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "gradwire/collectives/context.h"
#include "gradwire/compress/codec.h"
#include "gradwire/compress/error_feedback.h"

namespace gw {

// Tag phases (tag = phase << 28 | index) of the compressed collectives: 8 and up keep clear of
// the dense collectives' phases, since random-k runs a dense allreduce inside the same op.
constexpr uint32_t kCompressedPhaseReduceScatter = 8;
constexpr uint32_t kCompressedPhaseAllgather = 9;
constexpr uint32_t kCompressedPhaseSparseSize = 10;
constexpr uint32_t kCompressedPhaseSparsePairs = 11;

struct CompressedCall {
  CodecSpec spec;
  ResidualStore* residuals = nullptr;  // null: no error feedback
  std::string key;                     // error-feedback key
  bool average = false;                // divide the sum by the group size
};

// Bytes of one compressed op on this rank: `raw` is what the dense ring algorithm would have
// sent for the same op, `wire` what this rank actually sent (payload bytes, as the transport
// counts them).
struct CompressedBytes {
  uint64_t raw = 0;
  uint64_t wire = 0;
};

// In place on buf[0, count).
void compressed_allreduce(const OpContext& ctx, float* buf, size_t count, const CompressedCall& c);
// in holds size * count elements; out receives block `rank` of the sum.
void compressed_reduce_scatter(const OpContext& ctx, const float* in, float* out, size_t count,
                               const CompressedCall& c);
// out holds size * count elements; rank i's (decoded) input lands at block i, on every rank.
void compressed_allgather(const OpContext& ctx, const float* in, float* out, size_t count,
                          const CompressedCall& c);

// Dense-ring byte counts per rank, the `raw` of CompressedBytes.
uint64_t dense_allreduce_bytes(size_t count, int size);
uint64_t dense_reduce_scatter_bytes(size_t count, int size);
uint64_t dense_allgather_bytes(size_t count, int size);

}  // namespace gw
