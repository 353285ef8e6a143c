// Everything one parameter-server shard holds: dense shards, sparse tables, optimizer state,
// worker clocks, buffered BSP updates and the dedup table. No IO and no locking: the server
// serializes mutations, and the same calls replay the write-ahead log after a restart, so
// every mutation must be a deterministic function of the state and the request.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "gradwire/ps/consistency.h"
#include "gradwire/ps/grad_source.h"
#include "gradwire/ps/initializer.h"
#include "gradwire/ps/messages.h"
#include "gradwire/ps/optimizer.h"
#include "gradwire/ps/row_store.h"
#include "gradwire/ps/value_sink.h"

namespace gw {
namespace ps {

struct ShardConfig {
  int shard_id = 0;
  int num_servers = 1;
  int num_workers = 1;
  Mode mode = Mode::kAsp;
  uint64_t staleness = 0;
  uint64_t block_elems = 0;  // dense block size every worker must use
};

// BSP: the pushes of one clock, per worker (a worker's repeated pushes are summed). A dense
// shard is never empty (workers skip servers that own no block of a tensor).
struct PendingDense {
  std::vector<std::vector<float>> per_worker;
  int pushed = 0;
};
struct PendingRows {
  std::vector<std::map<int64_t, std::vector<float>>> per_worker;
  std::vector<uint8_t> pushed_by;
  int pushed = 0;
};

struct DenseKey {
  std::vector<int64_t> shape;
  uint64_t numel = 0;
  uint64_t shard_elems = 0;  // elements of this tensor on this shard
  OptSpec opt;
  std::vector<float> value;
  std::vector<float> state;  // opt.state_slots() * shard_elems
  int64_t step = 0;
  int64_t last_applied = -1;  // BSP: latest clock whose update was applied
  std::map<uint64_t, PendingDense> pending;
};

struct SparseTable {
  int64_t num_rows = 0;
  uint32_t dim = 0;
  InitSpec init;
  OptSpec opt;
  RowStore rows;  // the rows pushed so far: dim parameters, then opt.state_slots() * dim state
  int64_t last_applied = -1;
  std::map<uint64_t, PendingRows> pending;
};

class ShardState {
 public:
  explicit ShardState(const ShardConfig& cfg);

  const ShardConfig& config() const { return cfg_; }
  uint64_t min_clock() const { return clocks_.min(); }

  // Rejects requests from a worker id outside [0, num_workers).
  void check_worker(const RequestHead& h) const;
  // True when the mutation (session, mseq) was applied already (a resend).
  bool already_applied(const RequestHead& h) const;

  // Registration. A root (worker 0) registration creates the key from its data; any later one
  // must match. Returns false when a non-root worker must wait for the root's registration.
  bool register_dense(const RequestHead& h, Reader& meta, const float* init, size_t n);
  bool register_sparse(const RequestHead& h, Reader& meta);

  // Mutations; each validates before it changes anything and throws InvalidArgument.
  // `snapshot` (ASP only; else not called): receives the shard's value right after this push,
  // tile by tile as the update writes it (what push_pull answers, without re-reading).
  void push(const RequestHead& h, const float* grad, size_t n, ValueSink* snapshot = nullptr);
  // The same with the gradient read piece by piece; if reading fails part way, the pieces
  // before it are applied (the error propagates; see Server: in-place pushes).
  void push(const RequestHead& h, GradSource& grad, ValueSink* snapshot = nullptr);
  void push_rows(const RequestHead& h, const int64_t* ids, const float* grads, size_t n);
  void clock(const RequestHead& h);

  // Reads; false (with the reason) when the consistency mode says to wait.
  bool pull(const RequestHead& h, bool include_own, ValueSink* out, std::string* why);
  bool pull_rows(const RequestHead& h, const int64_t* ids, size_t n, Bytes* out, std::string* why);

  // For checkpoints.
  std::map<std::string, DenseKey>& dense() { return dense_; }
  std::map<std::string, SparseTable>& sparse() { return sparse_; }
  WorkerClocks& clocks() { return clocks_; }
  std::map<uint64_t, uint64_t>& last_mseq() { return last_mseq_; }
  void mark_applied(const RequestHead& h);

 private:
  DenseKey& dense_key(const RequestHead& h, const char* op);
  SparseTable& table(const RequestHead& h, const char* op);
  void check_rows(const SparseTable& t, const RequestHead& h, const int64_t* ids, size_t n,
                  const char* op) const;
  // The row of `id`, created (from the table's initializer, zero state) when absent.
  float* row(SparseTable& t, int64_t id);
  // One optimizer step on a row.
  void apply_row(SparseTable& t, float* row, const float* grad);
  void apply_dense(DenseKey& k, GradSource& grad, ValueSink* snapshot = nullptr);
  void apply_rows(SparseTable& t, const std::map<int64_t, std::vector<float>>& grads);
  // BSP: applies every buffered update that is complete or whose clock every worker passed.
  void drain_pending(DenseKey& k);
  void drain_pending(SparseTable& t);
  bool read_ready(int64_t last_applied, uint64_t earliest_pending, uint64_t clock, bool include_own,
                  std::string* why) const;

  ShardConfig cfg_;
  WorkerClocks clocks_;
  std::map<std::string, DenseKey> dense_;
  std::map<std::string, SparseTable> sparse_;
  std::map<uint64_t, uint64_t> last_mseq_;  // session -> last applied mutation
  std::vector<float*> batch_;               // the rows of the request being served
};

}  // namespace ps
}  // namespace gw
