#include "gradwire/ps/shard_state.h"

#include <algorithm>
#include <cstring>

#include "gradwire/ps/partitioner.h"

namespace gw {
namespace ps {
namespace {

// How far ahead a batch prefetches: index entries (one line each) and rows (several lines).
constexpr size_t kIndexAhead = 8;
constexpr size_t kRowAhead = 4;

uint64_t numel_of(const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    GW_CHECK_ARG(d >= 0, "negative dimension in shape ", shape_str(shape));
    n *= uint64_t(d);
  }
  return n;
}

}  // namespace

ShardState::ShardState(const ShardConfig& cfg) : cfg_(cfg), clocks_(cfg.num_workers) {}

void ShardState::check_worker(const RequestHead& h) const {
  GW_CHECK_ARG(h.worker < uint32_t(cfg_.num_workers), "worker id ", h.worker,
               " is out of range: this parameter server was started for ", cfg_.num_workers,
               " workers");
}

bool ShardState::already_applied(const RequestHead& h) const {
  auto it = last_mseq_.find(h.session);
  return h.mseq != 0 && it != last_mseq_.end() && h.mseq <= it->second;
}

void ShardState::mark_applied(const RequestHead& h) {
  if (h.mseq != 0) last_mseq_[h.session] = h.mseq;
}

bool ShardState::register_dense(const RequestHead& h, Reader& meta, const float* init, size_t n) {
  std::vector<int64_t> shape = meta.i64s();
  uint64_t block_elems = meta.u64();
  uint32_t num_servers = meta.u32();
  OptSpec opt = OptSpec::decode(meta);
  opt.validate();
  const std::string& name = h.key;
  GW_CHECK_ARG(num_servers == uint32_t(cfg_.num_servers), "register_dense('", name,
               "'): the worker knows ", num_servers, " parameter servers but this job has ",
               cfg_.num_servers);
  GW_CHECK_ARG(block_elems == cfg_.block_elems, "register_dense('", name, "'): worker ", h.worker,
               " cuts dense tensors into blocks of ", block_elems, " elements but the servers use ",
               cfg_.block_elems, " (GRADWIRE_PS_BLOCK_ELEMS must agree)");
  uint64_t numel = numel_of(shape);
  GW_CHECK_ARG(!sparse_.count(name), "register_dense('", name, "'): '", name,
               "' is already registered as a sparse table");
  auto it = dense_.find(name);
  if (it != dense_.end()) {
    const DenseKey& k = it->second;
    GW_CHECK_ARG(k.shape == shape, "register_dense('", name, "'): worker ", h.worker,
                 " registers shape ", shape_str(shape), " float32 but the tensor is registered ",
                 "with shape ", shape_str(k.shape), " float32");
    GW_CHECK_ARG(k.opt == opt, "register_dense('", name, "'): worker ", h.worker, " asks for ",
                 opt.describe(), " but the tensor is registered with ", k.opt.describe());
    return true;  // existing (or restored) values win over any init
  }
  if (h.worker != 0) return false;  // wait: worker 0's value is the initial one
  uint64_t shard =
      DensePartition(name, numel, block_elems, cfg_.num_servers).shard_elems(cfg_.shard_id);
  GW_CHECK_ARG(n == shard, "register_dense('", name, "'): init carries ", n, " elements for shard ",
               cfg_.shard_id, ", expected ", shard);
  DenseKey k;
  k.shape = shape;
  k.numel = numel;
  k.shard_elems = shard;
  k.opt = opt;
  k.value.assign(init, init + n);
  k.state.assign(opt.state_slots() * n, 0.0f);
  dense_.emplace(name, std::move(k));
  return true;
}

bool ShardState::register_sparse(const RequestHead& h, Reader& meta) {
  int64_t num_rows = meta.i64();
  uint32_t dim = meta.u32();
  uint32_t num_servers = meta.u32();
  InitSpec init = InitSpec::decode(meta);
  OptSpec opt = OptSpec::decode(meta);
  init.validate();
  opt.validate();
  const std::string& name = h.key;
  GW_CHECK_ARG(num_rows > 0 && dim > 0, "register_sparse('", name,
               "'): num_rows and dim must be positive (got ", num_rows, " x ", dim, ")");
  GW_CHECK_ARG(num_servers == uint32_t(cfg_.num_servers), "register_sparse('", name,
               "'): the worker knows ", num_servers, " parameter servers but this job has ",
               cfg_.num_servers);
  GW_CHECK_ARG(!dense_.count(name), "register_sparse('", name, "'): '", name,
               "' is already registered as a dense tensor");
  auto it = sparse_.find(name);
  if (it != sparse_.end()) {
    const SparseTable& t = it->second;
    GW_CHECK_ARG(t.num_rows == num_rows && t.dim == dim, "register_sparse('", name, "'): worker ",
                 h.worker, " registers ", num_rows, " rows x ", dim,
                 " float32 but the table is registered with ", t.num_rows, " rows x ", t.dim);
    GW_CHECK_ARG(t.opt == opt && t.init == init, "register_sparse('", name, "'): worker ", h.worker,
                 " asks for ", opt.describe(), " and ", init.describe(),
                 " but the table is registered with ", t.opt.describe(), " and ",
                 t.init.describe());
    return true;
  }
  if (h.worker != 0) return false;
  SparseTable t;
  t.num_rows = num_rows;
  t.dim = dim;
  t.init = init;
  t.opt = opt;
  t.rows = RowStore(dim, opt.state_slots());
  sparse_.emplace(name, std::move(t));
  return true;
}

DenseKey& ShardState::dense_key(const RequestHead& h, const char* op) {
  auto it = dense_.find(h.key);
  if (it == dense_.end()) {
    GW_THROW(InvalidArgument, op, "('", h.key, "'): unknown dense tensor on parameter server ",
             "shard ", cfg_.shard_id, (sparse_.count(h.key) ? " (it is a sparse table)" : ""),
             "; call register_dense first");
  }
  return it->second;
}

SparseTable& ShardState::table(const RequestHead& h, const char* op) {
  auto it = sparse_.find(h.key);
  if (it == sparse_.end()) {
    GW_THROW(InvalidArgument, op, "('", h.key, "'): unknown sparse table on parameter server ",
             "shard ", cfg_.shard_id, (dense_.count(h.key) ? " (it is a dense tensor)" : ""),
             "; call register_sparse first");
  }
  return it->second;
}

void ShardState::check_rows(const SparseTable& t, const RequestHead& h, const int64_t* ids,
                            size_t n, const char* op) const {
  for (size_t i = 0; i < n; ++i) {
    GW_CHECK_ARG(ids[i] >= 0 && ids[i] < t.num_rows, op, "('", h.key, "'): row id ", ids[i],
                 " is out of range [0, ", t.num_rows, ")");
    GW_CHECK_ARG(server_of_row(ids[i], cfg_.num_servers) == cfg_.shard_id, op, "('", h.key,
                 "'): row ", ids[i], " does not belong to shard ", cfg_.shard_id,
                 " (worker and server disagree on the partitioning)");
  }
}

float* ShardState::row(SparseTable& t, int64_t id) {
  return t.rows.find_or_create(id, [&](float* r) {
    init_row(t.init, id, r, t.dim);
    std::fill(r + t.dim, r + t.rows.row_floats(), 0.0f);
  });
}

void ShardState::apply_row(SparseTable& t, float* r, const float* grad) {
  int64_t& step = RowStore::step(r);
  step += 1;
  apply_update(t.opt, r, r + t.dim, grad, t.dim, step);
}

void ShardState::apply_dense(DenseKey& k, GradSource& grad, ValueSink* snapshot) {
  k.step += 1;
  // Tiles of 64 KiB: each gradient piece is consumed, and each updated piece copied out,
  // while it is in cache. The optimizers are element-wise, so the values are those of one
  // call over the whole shard.
  constexpr size_t kTile = 16384;
  const size_t n = k.shard_elems;
  if (snapshot) snapshot->begin(n * sizeof(float));
  for (size_t off = 0; off < n; off += kTile) {
    const size_t len = std::min(kTile, n - off);
    float* state = k.state.empty() ? nullptr : k.state.data() + off;
    apply_update(k.opt, k.value.data() + off, state, grad.piece(off, len), len, k.step, n);
    if (snapshot) snapshot->put(k.value.data() + off, len * sizeof(float));
  }
}

void ShardState::apply_rows(SparseTable& t, const std::map<int64_t, std::vector<float>>& grads) {
  // Every row first (created in id order), then the updates, as push_rows does.
  batch_.clear();
  for (const auto& [id, g] : grads) batch_.push_back(row(t, id));
  size_t i = 0;
  for (const auto& [id, g] : grads) {
    if (i + kRowAhead < batch_.size()) t.rows.prefetch_row(batch_[i + kRowAhead]);
    apply_row(t, batch_[i++], g.data());
  }
}

void ShardState::drain_pending(DenseKey& k) {
  uint64_t min = clocks_.min();
  while (!k.pending.empty()) {
    auto it = k.pending.begin();
    if (it->second.pushed < cfg_.num_workers && it->first >= min) return;
    std::vector<float> sum(k.shard_elems, 0.0f);
    for (const auto& g : it->second.per_worker) {
      if (g.empty()) continue;
      for (size_t i = 0; i < sum.size(); ++i) sum[i] += g[i];
    }
    BufferSource src(sum.data(), sum.size());
    apply_dense(k, src);
    k.last_applied = std::max<int64_t>(k.last_applied, int64_t(it->first));
    k.pending.erase(it);
  }
}

void ShardState::drain_pending(SparseTable& t) {
  uint64_t min = clocks_.min();
  while (!t.pending.empty()) {
    auto it = t.pending.begin();
    if (it->second.pushed < cfg_.num_workers && it->first >= min) return;
    std::map<int64_t, std::vector<float>> sum;
    for (const auto& rows : it->second.per_worker) {
      for (const auto& [id, g] : rows) {
        auto& s = sum[id];
        if (s.empty()) s.assign(t.dim, 0.0f);
        for (uint32_t i = 0; i < t.dim; ++i) s[i] += g[i];
      }
    }
    apply_rows(t, sum);
    t.last_applied = std::max<int64_t>(t.last_applied, int64_t(it->first));
    t.pending.erase(it);
  }
}

void ShardState::push(const RequestHead& h, const float* grad, size_t n, ValueSink* snapshot) {
  BufferSource src(grad, n);
  push(h, src, snapshot);
}

void ShardState::push(const RequestHead& h, GradSource& grad, ValueSink* snapshot) {
  const size_t n = grad.elems();
  DenseKey& k = dense_key(h, "push");
  GW_CHECK_ARG(n == k.shard_elems, "push('", h.key, "'): ", n, " gradient elements for shard ",
               cfg_.shard_id, ", expected ", k.shard_elems, " (tensor shape ", shape_str(k.shape),
               ")");
  if (cfg_.mode != Mode::kBsp) {
    apply_dense(k, grad, cfg_.mode == Mode::kAsp ? snapshot : nullptr);
    return;
  }
  // A late push (its clock already passed by every worker) drains right away, alone.
  PendingDense& p = k.pending[h.clock];
  if (p.per_worker.empty()) p.per_worker.resize(size_t(cfg_.num_workers));
  std::vector<float>& mine = p.per_worker[h.worker];
  const float* g = grad.piece(0, n);
  if (mine.empty()) {
    mine.assign(g, g + n);
    p.pushed += 1;
  } else {
    for (size_t i = 0; i < n; ++i) mine[i] += g[i];
  }
  drain_pending(k);
}

void ShardState::push_rows(const RequestHead& h, const int64_t* ids, const float* grads, size_t n) {
  SparseTable& t = table(h, "push_rows");
  check_rows(t, h, ids, n, "push_rows");
  if (cfg_.mode != Mode::kBsp) {
    // Resolve every id first (creating rows in request order) with the index lookups
    // prefetched ahead, then update the rows in request order (a repeated id is updated once
    // per occurrence, as if the rows were looked up one at a time). Rows never move, so the
    // pointers stay valid while later ids create rows.
    batch_.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (i + kIndexAhead < n) t.rows.prefetch_index(ids[i + kIndexAhead]);
      batch_[i] = row(t, ids[i]);
    }
    for (size_t i = 0; i < n; ++i) {
      if (i + kRowAhead < n) t.rows.prefetch_row(batch_[i + kRowAhead]);
      apply_row(t, batch_[i], grads + i * t.dim);
    }
    return;
  }
  PendingRows& p = t.pending[h.clock];
  if (p.per_worker.empty()) p.per_worker.resize(size_t(cfg_.num_workers));
  if (p.pushed_by.empty()) p.pushed_by.assign(size_t(cfg_.num_workers), 0);
  auto& mine = p.per_worker[h.worker];
  // A worker that pushes no rows at this clock still counts as having pushed.
  if (!p.pushed_by[h.worker]) {
    p.pushed_by[h.worker] = 1;
    p.pushed += 1;
  }
  for (size_t i = 0; i < n; ++i) {
    auto& g = mine[ids[i]];
    if (g.empty()) g.assign(t.dim, 0.0f);
    const float* src = grads + i * t.dim;
    for (uint32_t j = 0; j < t.dim; ++j) g[j] += src[j];
  }
  drain_pending(t);
}

void ShardState::clock(const RequestHead& h) {
  clocks_.advance(int(h.worker), h.clock);
  if (cfg_.mode != Mode::kBsp) return;
  for (auto& [name, k] : dense_) drain_pending(k);
  for (auto& [name, t] : sparse_) drain_pending(t);
}

bool ShardState::read_ready(int64_t last_applied, uint64_t earliest_pending, uint64_t clock,
                            bool include_own, std::string* why) const {
  uint64_t min = clocks_.min();
  bool ready = true;
  if (cfg_.mode == Mode::kSsp) {
    ready = ssp_read_ready(clock, min, cfg_.staleness);
  } else if (cfg_.mode == Mode::kBsp) {
    int64_t t = include_own ? int64_t(clock) : int64_t(clock) - 1;
    ready = bsp_read_ready(t, earliest_pending, last_applied, min);
  }
  if (!ready && why) {
    *why = str(mode_name(cfg_.mode), ": waiting for worker ", clocks_.slowest(), " (at clock ", min,
               "; this worker is at clock ", clock, ")");
  }
  return ready;
}

bool ShardState::pull(const RequestHead& h, bool include_own, ValueSink* out, std::string* why) {
  DenseKey& k = dense_key(h, include_own ? "push_pull" : "pull");
  uint64_t earliest = k.pending.empty() ? UINT64_MAX : k.pending.begin()->first;
  if (!read_ready(k.last_applied, earliest, h.clock, include_own, why)) return false;
  out->begin(k.shard_elems * sizeof(float));
  out->put(k.value.data(), k.shard_elems * sizeof(float));
  return true;
}

bool ShardState::pull_rows(const RequestHead& h, const int64_t* ids, size_t n, Bytes* out,
                           std::string* why) {
  SparseTable& t = table(h, "pull_rows");
  check_rows(t, h, ids, n, "pull_rows");
  uint64_t earliest = t.pending.empty() ? UINT64_MAX : t.pending.begin()->first;
  if (!read_ready(t.last_applied, earliest, h.clock, false, why)) return false;
  out->resize(n * t.dim * sizeof(float));
  float* dst = reinterpret_cast<float*>(out->data());
  batch_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    if (i + kIndexAhead < n) t.rows.prefetch_index(ids[i + kIndexAhead]);
    batch_[i] = t.rows.find(ids[i]);
  }
  for (size_t i = 0; i < n; ++i) {
    if (i + kRowAhead < n && batch_[i + kRowAhead]) t.rows.prefetch_params(batch_[i + kRowAhead]);
    // Reads do not create rows (only pushes do, so the WAL replays every creation); an
    // untouched row reads as its initial value.
    float* out_row = dst + i * t.dim;
    if (batch_[i]) {
      memcpy(out_row, batch_[i], t.dim * sizeof(float));
    } else {
      init_row(t.init, ids[i], out_row, t.dim);
    }
  }
  return true;
}

}  // namespace ps
}  // namespace gw
