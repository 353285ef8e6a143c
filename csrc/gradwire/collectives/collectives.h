// The collective algorithms. Each runs inside one op on the executing thread, sees only an
// OpContext and raw buffers, and returns when its part of the op is complete on this rank.
// Buffers hold `count` elements of `dtype` unless stated otherwise.
#pragma once

#include <cstddef>
#include <vector>

#include "gradwire/collectives/context.h"
#include "gradwire/common/dtype.h"

namespace gw {

enum class AllreduceAlgo { kAuto, kRing, kRecursiveDoubling, kHalvingDoubling };

// In place. kAuto picks by the cost model in allreduce.cc (GRADWIRE_ALGO pins it).
void allreduce(const OpContext& ctx, void* buf, size_t count, DType dtype, ReduceOp op);
void allreduce_ring(const OpContext& ctx, void* buf, size_t count, DType dtype, ReduceOp op);
void allreduce_recursive_doubling(const OpContext& ctx, void* buf, size_t count, DType dtype,
                                  ReduceOp op);
// Rabenseifner: reduce-scatter by recursive halving, allgather by recursive doubling.
void allreduce_halving_doubling(const OpContext& ctx, void* buf, size_t count, DType dtype,
                                ReduceOp op);
// The same exchanges through the transport's mailboxes; needs bytes <= transport->mail_bytes().
void allreduce_recursive_doubling_mail(const OpContext& ctx, void* buf, size_t count, DType dtype,
                                       ReduceOp op);
AllreduceAlgo choose_allreduce_algo(const OpContext& ctx, size_t bytes);

void broadcast(const OpContext& ctx, void* buf, size_t bytes, int root);
// In place at root; other ranks' buffers are left untouched.
void reduce(const OpContext& ctx, void* buf, size_t count, DType dtype, ReduceOp op, int root);
// out holds size * count elements, rank i's input lands at block i.
void allgather(const OpContext& ctx, const void* in, void* out, size_t count, DType dtype);
// in holds size * count elements; out receives block `rank` of the reduction.
void reduce_scatter(const OpContext& ctx, const void* in, void* out, size_t count, DType dtype,
                    ReduceOp op);
// Counts and displacements in elements, one per peer.
void alltoall(const OpContext& ctx, const void* in, void* out,
              const std::vector<size_t>& send_counts, const std::vector<size_t>& send_displs,
              const std::vector<size_t>& recv_counts, const std::vector<size_t>& recv_displs,
              DType dtype);
// out (root only) holds size * count elements.
void gather(const OpContext& ctx, const void* in, void* out, size_t count, DType dtype, int root);
// in (root only) holds size * count elements.
void scatter(const OpContext& ctx, const void* in, void* out, size_t count, DType dtype, int root);
void barrier(const OpContext& ctx);

}  // namespace gw
