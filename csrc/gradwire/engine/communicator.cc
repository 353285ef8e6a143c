#include "gradwire/engine/communicator.h"

#include "gradwire/collectives/collectives.h"
#include "gradwire/common/config.h"
#include "gradwire/common/error.h"
#include "gradwire/common/logging.h"
#include "gradwire/transport/mesh.h"
#include "gradwire/transport/tcp/socket.h"

namespace gw {
namespace {

Clock::time_point deadline_after(double seconds) {
  return Clock::now() +
         std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

OpFingerprint fingerprint(OpKind kind, DType dtype, size_t count, int root = -1,
                          ReduceOp op = ReduceOp::kSum) {
  OpFingerprint fp;
  fp.kind = kind;
  fp.dtype = dtype;
  fp.count = count;
  fp.root = root;
  fp.redop = uint8_t(op);
  return fp;
}

}  // namespace

uint32_t communicator_id(const std::string& name) {
  uint32_t h = 2166136261u;
  for (unsigned char c : name) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}

Communicator::Communicator(Store& store, int rank, int size, const CommOptions& opts)
    : rank_(rank),
      size_(size),
      opts_(opts),
      group_name_(std::make_shared<const std::string>(opts.name)),
      id_(communicator_id(opts.name)),
      timeout_seconds_(opts.timeout_seconds),
      p2p_(rank, group_name_) {
  GW_CHECK_ARG(size >= 1, "world size must be >= 1, got ", size);
  GW_CHECK_ARG(rank >= 0 && rank < size, "rank ", rank, " is out of range for world size ", size);
  GW_CHECK_ARG(opts.timeout_seconds > 0, "timeout must be positive, got ", opts.timeout_seconds,
               " s");
  const Config& cfg = Config::get();
  MeshOptions m;
  m.comm_id = id_;
  m.deadline = deadline_after(opts.timeout_seconds);
  m.transport = cfg.transport;
  m.shm_ring_bytes = cfg.shm_ring_bytes;
  m.mailbox_bytes = cfg.small_msg_bytes;
  m.stream.max_frame_bytes = cfg.max_frame_bytes;
  m.stream.probe_seconds = cfg.probe_seconds;
  m.stream.spin_seconds = cfg.spin_microseconds * 1e-6;
  m.stream.cma_min_bytes = cfg.cma_min_bytes;
  m.listen_host = opts.listen_host.empty()
                      ? tcp::choose_listen_address(cfg.socket_ifname, opts.route_hint)
                      : opts.listen_host;
  std::unique_ptr<StreamTransport> mesh;
  while (!mesh) {
    Rendezvous rv = Rendezvous::open(store, rank);
    // Without GRADWIRE_AUTH_TOKEN, rank 0 draws a per-job secret and shares it through the
    // store: this keeps other jobs and stray connections out; a token shared out of band also
    // keeps out anyone who can read the store.
    if (!cfg.auth_token.empty()) {
      m.secret = cfg.auth_token;
    } else if (size > 1) {
      if (rank == 0) rv.set("secret", random_hex(32));
      m.secret = rv.get("secret");
    }
    try {
      mesh = build_mesh(rv, rank, size, m, &listen_address_);
    } catch (const StaleRendezvous&) {
      // This rank read the keys of an earlier set-up (a restarted job reusing its store): start
      // over under the set-up rank 0 has published since.
      GW_LOG(kInfo, "rank ", rank, " of '", opts.name, "': set-up ", rv.nonce(),
             " is stale, starting over");
    }
  }
  for (const auto& k : mesh->channel_kinds()) channel_kinds_.push_back(k);
  transport_ = std::move(mesh);
  GW_LOG(kInfo, "communicator '", opts.name, "' rank ", rank, "/", size, " up on ",
         listen_address_);
  executor_ = std::thread([this] { run(); });
  executor_id_ = executor_.get_id();
}

Communicator::~Communicator() {
  try {
    stop(/*destroying=*/true);
  } catch (const std::exception& e) {
    GW_LOG(kError, "shutdown of communicator '", opts_.name, "' failed: ", e.what());
  }
}

namespace {
// Set by a communicator destroyed on its own executor thread, which then must not touch it.
thread_local const Communicator* destroyed_on_this_thread = nullptr;
}  // namespace

void Communicator::shutdown() { stop(/*destroying=*/false); }

void Communicator::stop(bool destroying) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ && !executor_.joinable()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (!executor_.joinable()) return;
  if (!on_executor_thread()) {
    executor_.join();  // the executor drains the queue, then returns
    return;
  }
  // On the executor thread: from a completion callback (shutdown()), the executor loop drains
  // the queue and returns by itself. From the destructor, run() has just dropped the last
  // reference at the end of a turn, holding no lock: drain here, then let run() return.
  if (!destroying) return;
  while (wait_for_work()) executor_turn();
  executor_.detach();
  destroyed_on_this_thread = this;
}

void Communicator::abort(const std::string& reason) { transport_->request_abort(reason); }

void Communicator::set_timeout(double seconds) {
  GW_CHECK_ARG(seconds > 0, "timeout must be positive, got ", seconds, " s");
  timeout_seconds_.store(seconds);
}

CommStats Communicator::stats() const {
  CommStats s;
  s.ops_completed = ops_completed_.load();
  s.ops_failed = ops_failed_.load();
  s.ops_inline = ops_inline_.load();
  s.bytes_sent = bytes_sent_.load();
  s.bytes_received = bytes_received_.load();
  s.bytes_single_copy = bytes_single_copy_.load();
  s.mailbox_messages = mailbox_messages_.load();
  s.compressed_ops = compressed_ops_.load();
  s.compressed_raw_bytes = compressed_raw_.load();
  s.compressed_wire_bytes = compressed_wire_.load();
  return s;
}

std::shared_ptr<Work> Communicator::submit(const OpFingerprint& fp, Body body, Work::Callback cb,
                                           bool inline_ok) {
  auto work = std::make_shared<Work>(fp, rank_, group_name_, std::move(cb));
  dispatch(Op{fp, std::move(body), work, nullptr}, inline_ok);
  return work;
}

void Communicator::dispatch(Op op, bool inline_ok) {
  if (executing_here()) {
    execute(op);  // issued from a completion callback: runs now (see the header)
    return;
  }
  std::unique_lock<std::mutex> lock(mu_);
  GW_CHECK_ARG(!stopping_, "communicator '", opts_.name, "' on rank ", rank_,
               " has been shut down; create a new process group");
  if (inline_ok && queue_.empty() && exec_mu_.try_lock()) {
    // Nothing queued and nothing executing: run it on this thread (see the header). `keep`
    // outlives the execution lock: a callback may drop the last outside reference.
    lock.unlock();
    std::shared_ptr<Communicator> keep = weak_from_this().lock();
    std::lock_guard<std::mutex> exec(exec_mu_, std::adopt_lock);
    executing_.store(std::this_thread::get_id());
    ops_inline_.fetch_add(1, std::memory_order_relaxed);
    std::shared_ptr<Work> work = op.p2p ? op.work : nullptr;
    execute(op);
    // A synchronous send or receive: this caller waits for it anyway, so it moves the bytes
    // itself rather than handing the transport to the executor and back.
    while (work && !work->is_completed()) progress_p2p(1);
    executing_.store(std::thread::id());
    return;
  }
  queue_.push_back(std::move(op));
  lock.unlock();
  cv_.notify_one();
}

void Communicator::run() {
  while (wait_for_work()) {
    // A callback of this turn may drop the last outside reference: holding one here moves the
    // destructor to the end of the turn (see the top of communicator.h).
    std::shared_ptr<Communicator> keep = weak_from_this().lock();
    executor_turn();
    keep.reset();
    if (destroyed_on_this_thread == this) {  // compares the address only: the object is gone
      destroyed_on_this_thread = nullptr;
      return;
    }
  }
}

bool Communicator::wait_for_work() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return stopping_ || !queue_.empty() || p2p_active_; });
  // Stopping: every queued op has run and every send/receive in flight has ended.
  return !queue_.empty() || p2p_active_;
}

void Communicator::executor_turn() {
  // Take the execution lock before the op: a caller on the fast path holds it while it runs
  // an op, and ops only leave the queue under it, so queue order is execution order.
  std::lock_guard<std::mutex> exec(exec_mu_);
  Op op;
  bool have_op = false, stopping = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping = stopping_;
    if (!queue_.empty()) {
      op = std::move(queue_.front());
      queue_.pop_front();
      have_op = true;
    }
  }
  executing_.store(std::this_thread::get_id());
  if (have_op) {
    execute(op);
  } else if (stopping && !p2p_.empty() && p2p_.only_receives()) {
    // Shut down with receives nobody will send to: fail them now rather than at their
    // deadline. Aborting the transport also drops the buffers it held for them.
    std::string msg = str("rank ", rank_, " of group '", opts_.name, "' was shut down with ",
                          p2p_.size(), " receive(s) still waiting for their message");
    transport_->abort(msg);
    ops_failed_.fetch_add(p2p_.size());
    p2p_.fail_all(std::make_exception_ptr(PeerError(msg)));
    reap_p2p();
  } else if (!p2p_.empty()) {
    // Sends/receives in flight: move their bytes, waking at least every millisecond to pick
    // up newly queued ops. At shutdown, sends still go out (until their deadline).
    progress_p2p(1);
  }
  executing_.store(std::thread::id());
}

template <typename F>
std::exception_ptr Communicator::run_op(const OpFingerprint& fp, F& body) {
  std::exception_ptr err;
  uint64_t seq = fp.kind == OpKind::kSendRecv ? seq_ : ++seq_;
  try {
    transport_->begin_op(seq, fp, deadline_after(timeout_seconds_.load()));
    OpContext ctx{transport_.get(), rank_, size_, seq, fp, &Config::get()};
    body(ctx);
    transport_->end_op();
  } catch (const std::exception& e) {
    err = std::current_exception();
    transport_->end_op();
    // Whatever failed, peers may be waiting on this rank inside the op: tell them.
    transport_->abort(e.what());
  }
  bytes_sent_.store(transport_->bytes_sent());
  bytes_received_.store(transport_->bytes_received());
  bytes_single_copy_.store(transport_->bytes_single_copy());
  mailbox_messages_.store(transport_->mail_messages());
  (err ? ops_failed_ : ops_completed_).fetch_add(1);
  return err;
}

void Communicator::execute(Op& op) {
  if (op.p2p) {
    start_p2p(std::move(op.p2p));
    return;
  }
  std::exception_ptr err = run_op(op.fp, op.body);
  op.work->finish(err);
  if (err && !p2p_.empty()) {
    // The failed op aborted the transport: sends and receives in flight can no longer move.
    ops_failed_.fetch_add(p2p_.size());
    p2p_.fail_all(err);
  }
  reap_p2p();  // sends and receives whose messages moved while the op waited
}

void Communicator::start_p2p(std::unique_ptr<P2POp> op) {
  op->start = Clock::now();
  op->deadline = deadline_after(timeout_seconds_.load());
  try {
    p2p_.start(*transport_, std::move(op));
  } catch (const std::exception&) {
    ops_failed_.fetch_add(p2p_.size());
    p2p_.fail_all(std::current_exception());  // the transport failed: nothing in flight moves
  }
  reap_p2p();
}

void Communicator::reap_p2p() {
  if (!p2p_.empty()) {
    try {
      ops_completed_.fetch_add(p2p_.reap(*transport_));
    } catch (const std::exception&) {
      ops_failed_.fetch_add(p2p_.size());
      p2p_.fail_all(std::current_exception());
    }
    bytes_sent_.store(transport_->bytes_sent());
    bytes_received_.store(transport_->bytes_received());
    bytes_single_copy_.store(transport_->bytes_single_copy());
  }
  update_p2p_active();
}

void Communicator::progress_p2p(int wait_ms) {
  try {
    transport_->progress_idle(wait_ms);
  } catch (const std::exception&) {
    ops_failed_.fetch_add(p2p_.size());
    p2p_.fail_all(std::current_exception());
  }
  reap_p2p();
}

void Communicator::update_p2p_active() {
  bool active = !p2p_.empty();
  if (active == p2p_published_) return;  // the common case: no lock
  p2p_published_ = active;
  {
    std::lock_guard<std::mutex> lock(mu_);
    p2p_active_ = active;
  }
  if (active) cv_.notify_one();  // the executor drives them from now on
}

template <typename F>
bool Communicator::run_here(const OpFingerprint& fp, F& body, std::exception_ptr* err) {
  if (executing_here()) {
    *err = run_op(fp, body);  // issued from a completion callback: runs now (see the header)
    reap_p2p();
    return true;
  }
  std::unique_lock<std::mutex> lock(mu_);
  GW_CHECK_ARG(!stopping_, "communicator '", opts_.name, "' on rank ", rank_,
               " has been shut down; create a new process group");
  if (!queue_.empty() || !exec_mu_.try_lock()) return false;
  lock.unlock();
  std::shared_ptr<Communicator> keep = weak_from_this().lock();  // as in dispatch()
  std::lock_guard<std::mutex> exec(exec_mu_, std::adopt_lock);
  executing_.store(std::this_thread::get_id());
  ops_inline_.fetch_add(1, std::memory_order_relaxed);
  *err = run_op(fp, body);
  reap_p2p();
  executing_.store(std::thread::id());
  return true;
}

void Communicator::check_reduce(DType dtype, ReduceOp op) const {
  try {
    check_reduce_supported(dtype, op);
  } catch (const InvalidArgument& e) {
    GW_THROW(InvalidArgument, "rank ", rank_, " of group '", opts_.name, "': ", e.what());
  }
}

void Communicator::check_rank(int r, const char* what) const {
  GW_CHECK_ARG(r >= 0 && r < size_, what, " ", r, " is out of range for group '", opts_.name,
               "' of size ", size_, " (on rank ", rank_, ")");
}

std::shared_ptr<Work> Communicator::allreduce(void* buf, size_t count, DType dtype, ReduceOp op,
                                              Work::Callback cb, bool inline_ok) {
  check_reduce(dtype, op);
  return submit(
      fingerprint(OpKind::kAllreduce, dtype, count, -1, op),
      [=](const OpContext& ctx) { gw::allreduce(ctx, buf, count, dtype, op); }, std::move(cb),
      inline_ok);
}

void Communicator::allreduce_sync(void* buf, size_t count, DType dtype, ReduceOp op) {
  check_reduce(dtype, op);
  const OpFingerprint fp = fingerprint(OpKind::kAllreduce, dtype, count, -1, op);
  auto body = [=](const OpContext& ctx) { gw::allreduce(ctx, buf, count, dtype, op); };
  std::exception_ptr err;
  if (!run_here(fp, body, &err)) {
    submit(fp, body, nullptr, true)->wait();  // behind queued ops, in their order
    return;
  }
  if (err) std::rethrow_exception(err);
}

std::shared_ptr<Work> Communicator::submit_compressed(OpKind kind, size_t count,
                                                      const CodecSpec& spec, const std::string& key,
                                                      bool average, uint64_t raw,
                                                      CompressedBody body, Work::Callback cb,
                                                      bool inline_ok) {
  GW_CHECK_ARG(spec.lossy(), "rank ", rank_, " of group '", opts_.name,
               "': a compressed collective needs a codec other than 'none'");
  OpFingerprint fp =
      fingerprint(kind, DType::kFloat32, count, -1, average ? ReduceOp::kAvg : ReduceOp::kSum);
  fp.root = kCompressedRootBase - int32_t(spec.kind);
  CompressedCall call{spec, &residuals_, key, average};
  return submit(
      fp,
      [this, call, raw, body = std::move(body)](const OpContext& ctx) {
        uint64_t before = ctx.transport->bytes_sent();
        body(ctx, call);
        compressed_wire_.fetch_add(ctx.transport->bytes_sent() - before);
        compressed_raw_.fetch_add(raw);
        compressed_ops_.fetch_add(1);
      },
      std::move(cb), inline_ok);
}

std::shared_ptr<Work> Communicator::compressed_allreduce(float* buf, size_t count,
                                                         const CodecSpec& spec,
                                                         const std::string& key, bool average,
                                                         Work::Callback cb, bool inline_ok) {
  return submit_compressed(
      OpKind::kAllreduce, count, spec, key, average, dense_allreduce_bytes(count, size_),
      [=](const OpContext& ctx, const CompressedCall& c) {
        gw::compressed_allreduce(ctx, buf, count, c);
      },
      std::move(cb), inline_ok);
}

std::shared_ptr<Work> Communicator::compressed_reduce_scatter(const float* in, float* out,
                                                              size_t count, const CodecSpec& spec,
                                                              const std::string& key, bool average,
                                                              Work::Callback cb, bool inline_ok) {
  return submit_compressed(
      OpKind::kReduceScatter, count, spec, key, average, dense_reduce_scatter_bytes(count, size_),
      [=](const OpContext& ctx, const CompressedCall& c) {
        gw::compressed_reduce_scatter(ctx, in, out, count, c);
      },
      std::move(cb), inline_ok);
}

std::shared_ptr<Work> Communicator::compressed_allgather(const float* in, float* out, size_t count,
                                                         const CodecSpec& spec,
                                                         const std::string& key, Work::Callback cb,
                                                         bool inline_ok) {
  return submit_compressed(
      OpKind::kAllgather, count, spec, key, false, dense_allgather_bytes(count, size_),
      [=](const OpContext& ctx, const CompressedCall& c) {
        gw::compressed_allgather(ctx, in, out, count, c);
      },
      std::move(cb), inline_ok);
}

std::shared_ptr<Work> Communicator::broadcast(void* buf, size_t count, DType dtype, int root,
                                              Work::Callback cb, bool inline_ok) {
  check_rank(root, "broadcast root");
  size_t bytes = count * dtype_size(dtype);
  return submit(
      fingerprint(OpKind::kBroadcast, dtype, count, root),
      [=](const OpContext& ctx) { gw::broadcast(ctx, buf, bytes, root); }, std::move(cb),
      inline_ok);
}

std::shared_ptr<Work> Communicator::reduce(void* buf, size_t count, DType dtype, ReduceOp op,
                                           int root, Work::Callback cb, bool inline_ok) {
  check_rank(root, "reduce root");
  check_reduce(dtype, op);
  return submit(
      fingerprint(OpKind::kReduce, dtype, count, root, op),
      [=](const OpContext& ctx) { gw::reduce(ctx, buf, count, dtype, op, root); }, std::move(cb),
      inline_ok);
}

std::shared_ptr<Work> Communicator::allgather(const void* in, void* out, size_t count, DType dtype,
                                              Work::Callback cb, bool inline_ok) {
  return submit(
      fingerprint(OpKind::kAllgather, dtype, count),
      [=](const OpContext& ctx) { gw::allgather(ctx, in, out, count, dtype); }, std::move(cb),
      inline_ok);
}

std::shared_ptr<Work> Communicator::reduce_scatter(const void* in, void* out, size_t count,
                                                   DType dtype, ReduceOp op, Work::Callback cb,
                                                   bool inline_ok) {
  check_reduce(dtype, op);
  return submit(
      fingerprint(OpKind::kReduceScatter, dtype, count, -1, op),
      [=](const OpContext& ctx) { gw::reduce_scatter(ctx, in, out, count, dtype, op); },
      std::move(cb), inline_ok);
}

std::shared_ptr<Work> Communicator::alltoall(const void* in, void* out,
                                             std::vector<size_t> send_counts,
                                             std::vector<size_t> recv_counts, DType dtype,
                                             Work::Callback cb, bool inline_ok) {
  GW_CHECK_ARG(int(send_counts.size()) == size_ && int(recv_counts.size()) == size_,
               "alltoall on rank ", rank_, ": expected ", size_, " split sizes, got ",
               send_counts.size(), " send and ", recv_counts.size(), " receive sizes");
  GW_CHECK_ARG(send_counts[rank_] == recv_counts[rank_], "alltoall on rank ", rank_, ": sends ",
               send_counts[rank_], " elements to itself but expects ", recv_counts[rank_]);
  std::vector<size_t> send_displs(size_), recv_displs(size_);
  for (int i = 1; i < size_; ++i) {
    send_displs[i] = send_displs[i - 1] + send_counts[i - 1];
    recv_displs[i] = recv_displs[i - 1] + recv_counts[i - 1];
  }
  // Ranks may legitimately send different amounts: the fingerprint carries no count, and the
  // transport checks each message's size against what its receiver expects.
  return submit(
      fingerprint(OpKind::kAlltoall, dtype, 0),
      [=](const OpContext& ctx) {
        gw::alltoall(ctx, in, out, send_counts, send_displs, recv_counts, recv_displs, dtype);
      },
      std::move(cb), inline_ok);
}

std::shared_ptr<Work> Communicator::gather(const void* in, void* out, size_t count, DType dtype,
                                           int root, Work::Callback cb, bool inline_ok) {
  check_rank(root, "gather root");
  return submit(
      fingerprint(OpKind::kGather, dtype, count, root),
      [=](const OpContext& ctx) { gw::gather(ctx, in, out, count, dtype, root); }, std::move(cb),
      inline_ok);
}

std::shared_ptr<Work> Communicator::scatter(const void* in, void* out, size_t count, DType dtype,
                                            int root, Work::Callback cb, bool inline_ok) {
  check_rank(root, "scatter root");
  return submit(
      fingerprint(OpKind::kScatter, dtype, count, root),
      [=](const OpContext& ctx) { gw::scatter(ctx, in, out, count, dtype, root); }, std::move(cb),
      inline_ok);
}

std::shared_ptr<Work> Communicator::barrier(Work::Callback cb, bool inline_ok) {
  return submit(
      fingerprint(OpKind::kBarrier, DType::kUInt8, 0),
      [](const OpContext& ctx) { gw::barrier(ctx); }, std::move(cb), inline_ok);
}

std::shared_ptr<Work> Communicator::submit_p2p(bool is_send, void* buf, size_t count, DType dtype,
                                               int peer, uint32_t tag, Work::Callback cb,
                                               bool inline_ok) {
  auto op = std::make_unique<P2POp>();
  op->is_send = is_send;
  op->peer = peer;
  op->any_source = peer == kAnySource;
  op->tag = tag;
  op->buf = buf;
  op->bytes = count * dtype_size(dtype);
  op->fp = fingerprint(OpKind::kSendRecv, dtype, count, -1);
  auto work = std::make_shared<Work>(op->fp, rank_, group_name_, std::move(cb));
  op->work = work;
  OpFingerprint fp = op->fp;
  dispatch(Op{fp, nullptr, work, std::move(op)}, inline_ok);
  return work;
}

std::shared_ptr<Work> Communicator::send(const void* buf, size_t count, DType dtype, int peer,
                                         uint32_t tag, Work::Callback cb, bool inline_ok) {
  check_rank(peer, "send destination");
  GW_CHECK_ARG(peer != rank_, "rank ", rank_, " cannot send to itself");
  return submit_p2p(true, const_cast<void*>(buf), count, dtype, peer, tag, std::move(cb),
                    inline_ok);
}

std::shared_ptr<Work> Communicator::recv(void* buf, size_t count, DType dtype, int peer,
                                         uint32_t tag, Work::Callback cb, bool inline_ok) {
  if (peer != kAnySource) check_rank(peer, "recv source");
  GW_CHECK_ARG(peer != rank_, "rank ", rank_, " cannot receive from itself");
  GW_CHECK_ARG(peer != kAnySource || size_ > 1, "rank ", rank_, " of group '", opts_.name,
               "' cannot receive from any source: the group has no other rank");
  return submit_p2p(false, buf, count, dtype, peer, tag, std::move(cb), inline_ok);
}

}  // namespace gw
