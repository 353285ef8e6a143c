// Write-ahead log of acknowledged mutations (docs/parameter-server.md, "Durability").
//
// File <dir>/shard-<I>.wal.<generation>, a sequence of records
//
//   u32 'GWAL' | u32 op | u64 n | n bytes: the request payload as received | u32 'DONE'
//
// A server appends the record of a mutation after applying it and before acknowledging it.
// After a checkpoint the log rolls to the next generation and older files are deleted; a
// restarted server loads its checkpoint and replays the generations from the checkpoint's on.
// A torn last record (the process died inside write()) has no trailing 'DONE' and is ignored:
// it was never acknowledged.
//
// Durability: with sync "write" (the default) the record is in the kernel (write(2) returned)
// before the acknowledgement, which survives the death of the server process; with
// "fdatasync" it is also on stable storage, which survives a machine crash, at the cost of one
// disk flush per acknowledged mutation (concurrent flushes share one).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

namespace gw {
namespace ps {

enum class WalSync { kWrite, kFdatasync };
WalSync parse_wal_sync(const std::string& s);

class Wal {
 public:
  Wal(const std::string& dir, int shard_id, WalSync sync, uint64_t generation);
  ~Wal();
  Wal(const Wal&) = delete;
  Wal& operator=(const Wal&) = delete;

  // Writes the record (caller serializes appends); returns its end offset for sync().
  uint64_t append(uint32_t op, const std::vector<char>& payload);
  // Makes every record up to `end` durable under the sync policy (call without server locks).
  void sync(uint64_t end);
  uint64_t bytes() const { return bytes_; }
  uint64_t generation() const { return generation_; }
  // Starts generation `g` and deletes older files (after a checkpoint that covers them).
  void roll(uint64_t g);

  // Calls fn(op, payload) for every complete record of generations >= from, in order.
  static void replay(const std::string& dir, int shard_id, uint64_t from,
                     const std::function<void(uint32_t, std::vector<char>&)>& fn);

 private:
  void open_generation(uint64_t g);
  std::string dir_;
  int shard_id_;
  WalSync sync_;
  uint64_t generation_ = 0;
  int fd_ = -1;
  uint64_t bytes_ = 0;
  std::mutex sync_mu_;
  uint64_t synced_ = 0;
};

std::string wal_path(const std::string& dir, int shard_id, uint64_t generation);

}  // namespace ps
}  // namespace gw
