// Compressed dense pushes (docs/parameter-server.md, "Compressed pushes").
//
// A worker that registered a tensor with a codec encodes each shard's part of a gradient
// (the shard's blocks, concatenated in order) with that codec, after error feedback: the
// residual of (tensor, shard) is added first and what the codec dropped becomes the new
// residual (compress/error_feedback.h). The request's meta then ends with the codec's spec and
// the encoding seed; its data is the encoded bytes. The server checks the encoded size against
// the shard's element count, decodes and applies the gradient as if it had been sent dense; the
// write-ahead log keeps the encoded request, whose decoding is deterministic.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gradwire/compress/codec.h"
#include "gradwire/compress/error_feedback.h"

namespace gw {
namespace ps {

// Encodes x[0, n) (compensated in place by the residual of `key` when the spec uses error
// feedback and `residuals` is given) into *out; returns the encoded bytes.
size_t encode_push(const CodecSpec& spec, ResidualStore* residuals, const std::string& key,
                   float* x, size_t n, uint64_t seed, std::vector<char>* out);

// Decodes an encoded push of n elements into out (n floats). Throws InvalidArgument when
// `bytes` is not a valid encoding of n elements for the spec.
void decode_push(const CodecSpec& spec, uint64_t seed, const char* data, size_t bytes, size_t n,
                 float* out, const std::string& what);

}  // namespace ps
}  // namespace gw
