// The worker side of the parameter server: partitions every request by key (partitioner.h),
// fans it out to the shards' links, and completes one PsFuture when every shard answered.
// Buffers passed in must stay valid until the future completes (the Python layer holds them).
// Only float32 values and int64 row ids cross this interface.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gradwire/compress/codec.h"
#include "gradwire/compress/error_feedback.h"
#include "gradwire/ps/future.h"
#include "gradwire/ps/initializer.h"
#include "gradwire/ps/optimizer.h"
#include "gradwire/ps/partitioner.h"
#include "gradwire/ps/server_link.h"

namespace gw {
namespace ps {

struct ClientOptions {
  std::vector<std::string> servers;  // "host:port" of shard 0, 1, ...
  int worker_id = 0;
  int num_workers = 1;
  double timeout_seconds = 300;  // deadline of each operation, reconnects included
};

class Client {
 public:
  explicit Client(const ClientOptions& opts);
  ~Client();

  // `codec`: "" or a codec spec (compress/codec.h) this worker's pushes of the tensor use,
  // with error feedback unless the spec says ":noef" (ps/push_codec.h).
  std::shared_ptr<PsFuture> register_dense(const std::string& name,
                                           const std::vector<int64_t>& shape, const float* init,
                                           const OptSpec& opt, const std::string& codec = "");
  std::shared_ptr<PsFuture> push(const std::string& name, const float* grad, uint64_t numel);
  std::shared_ptr<PsFuture> pull(const std::string& name, float* out, uint64_t numel);
  std::shared_ptr<PsFuture> push_pull(const std::string& name, const float* grad, float* out,
                                      uint64_t numel);

  std::shared_ptr<PsFuture> register_sparse(const std::string& table, int64_t num_rows,
                                            uint32_t dim, const InitSpec& init, const OptSpec& opt);
  // `ids` may repeat: each distinct id is requested once, and pushed once with the sum of its
  // gradients (de-duplication on the worker); out / grads are n x dim.
  std::shared_ptr<PsFuture> pull_rows(const std::string& table, const int64_t* ids, uint64_t n,
                                      float* out);
  std::shared_ptr<PsFuture> push_rows(const std::string& table, const int64_t* ids, uint64_t n,
                                      const float* grads);

  // Advances this worker's clock on every server.
  std::shared_ptr<PsFuture> clock();
  // collective: every worker calls it at the same point; the shards write when all have, which
  // makes their checkpoints one consistent cut of the job.
  std::shared_ptr<PsFuture> checkpoint(bool collective);
  void close();

  uint64_t current_clock() const { return clock_.load(); }
  // Largest (own clock - slowest worker's clock) a read was served at; bounded by s under SSP.
  uint64_t max_observed_staleness() const { return max_staleness_.load(); }
  int num_servers() const { return int(links_.size()); }
  // Payload bytes moved by same-host single copy, both directions (ps/single_copy.h).
  uint64_t single_copy_bytes() const;
  // Of those, reply bytes the servers wrote straight into this worker's tensors.
  uint64_t in_place_bytes() const;
  // Data bytes of the dense pushes sent (encoded size for compressed tensors), and the bytes
  // they would have been as float32.
  uint64_t push_wire_bytes() const { return push_wire_bytes_.load(); }
  uint64_t push_dense_bytes() const { return push_dense_bytes_.load(); }
  // Error-feedback residuals of compressed pushes, keyed "<tensor>/<shard>".
  ResidualStore& residuals() { return residuals_; }
  int worker_id() const { return opts_.worker_id; }

 private:
  struct DenseInfo {
    std::vector<int64_t> shape;
    std::shared_ptr<DensePartition> part;
    CodecSpec codec;  // kNone: pushes travel as float32
  };
  struct TableInfo {
    int64_t num_rows;
    uint32_t dim;
  };
  // The rows of one request that one shard holds: its distinct ids, and for every position of
  // the request, the slot of its id.
  struct ShardRows {
    std::vector<int64_t> ids;
    std::vector<std::pair<uint32_t, uint64_t>> slot_pos;
  };
  struct RowPlan {
    TableInfo table;
    std::vector<ShardRows> shards;
  };
  RowPlan plan_rows(const std::string& table, const int64_t* ids, uint64_t n, const char* op);

  DenseInfo dense(const std::string& name, uint64_t numel, const char* op);
  TableInfo table(const std::string& name, const char* op);
  std::shared_ptr<PsFuture> dense_op(PsOp op, const std::string& name, const float* grad,
                                     float* out, uint64_t numel);
  std::shared_ptr<PendingRequest> request(PsOp op, std::string what,
                                          const std::shared_ptr<PsFuture>& f);
  std::shared_ptr<PsFuture> future(const std::string& what, int parts);
  void send(int shard, std::shared_ptr<PendingRequest> req, const std::string& key,
            const std::function<void(Writer&)>& body);
  void note_read(uint64_t at_clock, Reader& meta);

  ClientOptions opts_;
  uint64_t session_;
  std::vector<std::unique_ptr<ServerLink>> links_;
  std::mutex mu_;
  std::map<std::string, DenseInfo> dense_;
  std::map<std::string, TableInfo> tables_;
  std::atomic<uint64_t> clock_{0};
  std::atomic<uint64_t> max_staleness_{0};
  std::atomic<uint64_t> checkpoint_epoch_{0};
  std::atomic<uint64_t> push_seed_{0};
  std::atomic<uint64_t> push_wire_bytes_{0}, push_dense_bytes_{0};
  ResidualStore residuals_;
};

}  // namespace ps
}  // namespace gw
