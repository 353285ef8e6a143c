// The ring of the quantized codecs (fp16, bf16, int8, int4, sign, qsgd): reduce-scatter whose
// every hop decodes, adds and re-encodes, and an allgather that forwards each owner's encoding
// unchanged. Used by compressed_allreduce (both halves), compressed_reduce_scatter and
// compressed_allgather (docs/compression.md, "Compressed collectives").
//
// Everything moves in chunks of whole codec blocks, and every pass over a chunk happens right
// before the chunk is needed, while later chunks are still on the wire:
//  * this rank's contribution to a chunk is encoded once, straight from the input plus the
//    error-feedback residual (which is updated from the same encoding), into `own` codes; the
//    first hop sends those bytes, later hops add their decoded value to what arrives. The input
//    is read once and never written before the result lands.
//  * a partial sum lives only in a chunk-sized tile between decode-add and re-encode;
//  * the owner of a segment encodes its full sum chunk by chunk and sends each chunk at once;
//    every rank (the owner too) decodes the allgather's bytes into the output, divided by the
//    group size when averaging.
// So an int8 allreduce reads and writes each rank's buffer about five times in all (the input and
// the residual once each, the residual and the output once each, codes), instead of about ten
// when each phase ran over the whole buffer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "gradwire/collectives/context.h"
#include "gradwire/collectives/ring.h"
#include "gradwire/compress/compressed_collectives.h"

namespace gw {

// In place on buf[0, count): the (averaged) sum of every rank's buf, identical on all ranks.
void quantized_allreduce(const OpContext& ctx, float* buf, size_t count, const CompressedCall& c);

// in: size * count elements; out: block `rank` of the (averaged) sum.
void quantized_reduce_scatter(const OpContext& ctx, const float* in, float* out, size_t count,
                              const CompressedCall& c);

// out: size * count elements; every rank's decoded input at its block, on every rank (this
// rank's block too: what it contributed after the codec).
void quantized_allgather(const OpContext& ctx, const float* in, float* out, size_t count,
                         const CompressedCall& c);

}  // namespace gw
