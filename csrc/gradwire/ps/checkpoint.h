// Checkpoints of one shard (docs/parameter-server.md, "Checkpoints").
//
// <dir>/shard-<I>.ckpt holds the shard's whole state: its configuration, every worker's clock,
// the dedup table, dense shards and sparse rows with their optimizer state and step counts, and
// the BSP updates still buffered, plus the write-ahead-log generation that continues it. It is
// written to a temporary file, flushed (fsync) and renamed over the previous one, so a crash
// leaves either the old or the new checkpoint, never a torn one.
#pragma once

#include <cstdint>
#include <string>

#include "gradwire/ps/shard_state.h"

namespace gw {
namespace ps {

std::string checkpoint_path(const std::string& dir, int shard_id);

void save_checkpoint(ShardState& s, const std::string& dir, uint64_t wal_generation);

// Loads the shard's checkpoint into `s` when one exists; returns its WAL generation (0 when
// there is none). A checkpoint of a job with another layout (servers, workers, mode, block
// size) is an InvalidArgument naming the difference.
uint64_t load_checkpoint(ShardState& s, const std::string& dir);

}  // namespace ps
}  // namespace gw
