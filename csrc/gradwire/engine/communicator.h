// A communicator: one group of ranks, its transport, and the thread that executes its ops.
//
// Threading and ordering (docs/architecture.md):
//  * submit() may be called from any thread; ops execute one at a time, in submission order, on
//    the communicator's executor thread. Collective sequence numbers are assigned at execution.
//  * A Work completes on the thread that executed it and its callback runs there before the next
//    op. An op submitted from that thread (i.e. from such a callback) executes at once, inline:
//    so a comm hook that issues a collective when another one completes issues it at the same
//    point of the op stream on every rank, and a blocking wait inside a callback cannot
//    deadlock on the queue behind it.
//  * Fast path: a caller that will wait for the op anyway (inline_ok) executes it itself when the
//    queue is empty and no op is executing, saving two thread hand-offs. Order is kept: ops
//    are only taken from the queue by whoever holds the execution lock.
//  * Synchronous calls (allreduce_sync) go further on that path: no Work, no std::function and
//    no callback; the error is thrown to the caller. Behind queued ops they queue and wait like
//    any other op.
//  * The transport is touched only by the executing thread.
//  * Lifetime: a completion callback may drop the last reference to the communicator. Whoever
//    executes ops holds a reference of its own meanwhile (when the communicator is owned by a
//    shared_ptr), so the destructor runs only after the last use of a member. On the executor
//    thread it then runs at the end of a turn: it executes what is still queued, detaches the
//    thread, and the thread leaves run() without touching the object again.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gradwire/collectives/context.h"
#include "gradwire/common/store.h"
#include "gradwire/compress/compressed_collectives.h"
#include "gradwire/compress/error_feedback.h"
#include "gradwire/engine/p2p.h"
#include "gradwire/engine/work.h"
#include "gradwire/transport/transport.h"

namespace gw {

struct CommOptions {
  std::string name = "default";   // group name, used in messages and for the communicator id
  double timeout_seconds = 1800;  // deadline of every op and of connection set-up
  std::string route_hint;         // host of the rendezvous master: picks the interface
  std::string listen_host;        // explicit address to listen on (overrides the choice)
};

struct CommStats {
  uint64_t ops_completed = 0;
  uint64_t ops_failed = 0;
  uint64_t ops_inline = 0;  // ops the calling thread executed itself (the fast path)
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_single_copy = 0;  // received by single copy from same-host peers
  uint64_t mailbox_messages = 0;   // small messages sent through same-host mailboxes
  // Compressed collectives: ops, the bytes a dense ring would have sent, the bytes sent.
  uint64_t compressed_ops = 0;
  uint64_t compressed_raw_bytes = 0;
  uint64_t compressed_wire_bytes = 0;
};

class Communicator : public std::enable_shared_from_this<Communicator> {
 public:
  using Body = std::function<void(const OpContext&)>;

  Communicator(Store& store, int rank, int size, const CommOptions& opts);
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  const std::string& name() const { return opts_.name; }
  uint32_t id() const { return id_; }
  std::string listen_address() const { return listen_address_; }
  // How each peer is reached: "tcp", "shm" (and "self").
  const std::vector<std::string>& channel_kinds() const { return channel_kinds_; }

  std::shared_ptr<Work> allreduce(void* buf, size_t count, DType dtype, ReduceOp op,
                                  Work::Callback cb, bool inline_ok = false);
  // allreduce() for a caller that waits for it anyway, with no Work on the idle path (see the
  // top of this file). Returns when the op completed; throws its error.
  void allreduce_sync(void* buf, size_t count, DType dtype, ReduceOp op);
  // Compressed collectives on float32 buffers (compress/compressed_collectives.h). Error
  // feedback uses this communicator's residuals under `key` unless the codec turns it off.
  // average: the result is divided by the group size (ReduceOp AVG).
  std::shared_ptr<Work> compressed_allreduce(float* buf, size_t count, const CodecSpec& spec,
                                             const std::string& key, bool average,
                                             Work::Callback cb, bool inline_ok = false);
  std::shared_ptr<Work> compressed_reduce_scatter(const float* in, float* out, size_t count,
                                                  const CodecSpec& spec, const std::string& key,
                                                  bool average, Work::Callback cb,
                                                  bool inline_ok = false);
  std::shared_ptr<Work> compressed_allgather(const float* in, float* out, size_t count,
                                             const CodecSpec& spec, const std::string& key,
                                             Work::Callback cb, bool inline_ok = false);
  ResidualStore& residuals() { return residuals_; }

  std::shared_ptr<Work> broadcast(void* buf, size_t count, DType dtype, int root, Work::Callback cb,
                                  bool inline_ok = false);
  std::shared_ptr<Work> reduce(void* buf, size_t count, DType dtype, ReduceOp op, int root,
                               Work::Callback cb, bool inline_ok = false);
  std::shared_ptr<Work> allgather(const void* in, void* out, size_t count, DType dtype,
                                  Work::Callback cb, bool inline_ok = false);
  std::shared_ptr<Work> reduce_scatter(const void* in, void* out, size_t count, DType dtype,
                                       ReduceOp op, Work::Callback cb, bool inline_ok = false);
  std::shared_ptr<Work> alltoall(const void* in, void* out, std::vector<size_t> send_counts,
                                 std::vector<size_t> recv_counts, DType dtype, Work::Callback cb,
                                 bool inline_ok = false);
  std::shared_ptr<Work> gather(const void* in, void* out, size_t count, DType dtype, int root,
                               Work::Callback cb, bool inline_ok = false);
  std::shared_ptr<Work> scatter(const void* in, void* out, size_t count, DType dtype, int root,
                                Work::Callback cb, bool inline_ok = false);
  std::shared_ptr<Work> barrier(Work::Callback cb, bool inline_ok = false);
  // Point-to-point (engine/p2p.h): posted when executed, complete when their message has moved,
  // in any order relative to each other and to later ops. recv() with peer kAnySource takes
  // the first message with its tag from any rank; the Work's source_rank() then names it.
  std::shared_ptr<Work> send(const void* buf, size_t count, DType dtype, int peer, uint32_t tag,
                             Work::Callback cb, bool inline_ok = false);
  std::shared_ptr<Work> recv(void* buf, size_t count, DType dtype, int peer, uint32_t tag,
                             Work::Callback cb, bool inline_ok = false);

  // Executes queued ops, then stops the executor. Safe to call twice.
  void shutdown();
  // Fails the current and every later op; peers are told (thread-safe).
  void abort(const std::string& reason);
  void set_timeout(double seconds);
  double timeout() const { return timeout_seconds_.load(); }
  bool on_executor_thread() const { return std::this_thread::get_id() == executor_id_; }
  // True on the thread executing an op right now (the executor, or a caller running inline).
  bool executing_here() const { return executing_.load() == std::this_thread::get_id(); }
  CommStats stats() const;

 private:
  struct Op {
    OpFingerprint fp;
    Body body;
    std::shared_ptr<Work> work;
    std::unique_ptr<P2POp> p2p;  // set for a send or receive (no body)
  };

  std::shared_ptr<Work> submit(const OpFingerprint& fp, Body body, Work::Callback cb,
                               bool inline_ok = false);
  // Runs the op on this thread when it may (see the top of this file), else queues it.
  void dispatch(Op op, bool inline_ok);
  std::shared_ptr<Work> submit_p2p(bool is_send, void* buf, size_t count, DType dtype, int peer,
                                   uint32_t tag, Work::Callback cb, bool inline_ok);
  void execute(Op& op);
  // Point-to-point ops in flight: post one; complete or fail those whose messages moved (or
  // whose deadline passed); drive the transport between ops for at most wait_ms. All three
  // run on the thread holding the execution lock.
  void start_p2p(std::unique_ptr<P2POp> op);
  void reap_p2p();
  void progress_p2p(int wait_ms);
  // Publishes whether point-to-point ops are in flight (the executor then drives them).
  void update_p2p_active();
  // Runs one op on this thread (which holds the execution lock); returns its error.
  template <typename F>
  std::exception_ptr run_op(const OpFingerprint& fp, F& body);
  // Runs the op here if this thread may (from a completion callback, or when nothing is queued
  // or executing), storing its error in *err; false when it must be queued.
  template <typename F>
  bool run_here(const OpFingerprint& fp, F& body, std::exception_ptr* err);
  void run();
  // The executor's two halves: wait until there is work (false: stopped, nothing left), and
  // one turn of work (an op, or 1 ms of driving sends/receives in flight).
  bool wait_for_work();
  void executor_turn();
  // Stops the executor after the queue has drained; `destroying`: called by the destructor.
  void stop(bool destroying);
  void check_rank(int r, const char* what) const;
  void check_reduce(DType dtype, ReduceOp op) const;
  using CompressedBody = std::function<void(const OpContext&, const CompressedCall&)>;
  std::shared_ptr<Work> submit_compressed(OpKind kind, size_t count, const CodecSpec& spec,
                                          const std::string& key, bool average, uint64_t raw,
                                          CompressedBody body, Work::Callback cb, bool inline_ok);

  const int rank_;
  const int size_;
  const CommOptions opts_;
  const std::shared_ptr<const std::string> group_name_;  // shared with every Work
  const uint32_t id_;
  std::unique_ptr<Transport> transport_;
  std::string listen_address_;
  std::vector<std::string> channel_kinds_;
  std::atomic<double> timeout_seconds_;

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Op> queue_;
  bool stopping_ = false;
  bool p2p_active_ = false;  // mirrors !p2p_.empty() for the executor's wait (under mu_)
  std::thread executor_;
  std::thread::id executor_id_;
  // Held while an op executes: by the executor, or by a caller taking the inline fast path.
  std::mutex exec_mu_;
  std::atomic<std::thread::id> executing_{};

  // Executor-thread state.
  uint64_t seq_ = 0;
  P2PQueue p2p_;
  bool p2p_published_ = false;  // the value last written to p2p_active_

  std::atomic<uint64_t> ops_completed_{0}, ops_failed_{0}, ops_inline_{0};
  std::atomic<uint64_t> bytes_sent_{0}, bytes_received_{0}, bytes_single_copy_{0};
  std::atomic<uint64_t> mailbox_messages_{0};
  std::atomic<uint64_t> compressed_ops_{0}, compressed_raw_{0}, compressed_wire_{0};
  ResidualStore residuals_;
};

// FNV-1a of the group name: the communicator id carried in every frame and handshake.
uint32_t communicator_id(const std::string& name);

}  // namespace gw
