#include "gradwire/ps/client.h"

#include <cstring>
#include <random>
#include <unordered_map>

#include "gradwire/common/config.h"
#include "gradwire/compress/codec_ops.h"
#include "gradwire/ps/push_codec.h"
#include "gradwire/transport/transport.h"

namespace gw {
namespace ps {
namespace {

uint64_t random_session() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd() ^ (uint64_t(rd()) << 16);
}

std::vector<iovec> block_iovecs(const std::vector<Block>& blocks, const float* base) {
  std::vector<iovec> v;
  v.reserve(blocks.size());
  for (const Block& b : blocks) {
    v.push_back({const_cast<float*>(base + b.offset), b.count * sizeof(float)});
  }
  return v;
}

}  // namespace

Client::Client(const ClientOptions& opts) : opts_(opts), session_(random_session()) {
  GW_CHECK_ARG(!opts.servers.empty(), "parameter-server client: no server addresses given");
  GW_CHECK_ARG(opts.num_workers > 0 && opts.worker_id >= 0 && opts.worker_id < opts.num_workers,
               "parameter-server client: worker id ", opts.worker_id, " must be in [0, ",
               opts.num_workers, ")");
  GW_CHECK_ARG(opts.timeout_seconds > 0, "parameter-server client: timeout must be positive");
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(opts.timeout_seconds));
  for (size_t s = 0; s < opts.servers.size(); ++s) {
    LinkIdentity id{int(s), int(opts.servers.size()), opts.worker_id, opts.servers[s],
                    opts.timeout_seconds};
    links_.push_back(std::make_unique<ServerLink>(id, deadline));
  }
}

Client::~Client() { close(); }

void Client::close() {
  for (auto& l : links_) l->close();
}

std::shared_ptr<PsFuture> Client::future(const std::string& what, int parts) {
  // A little later than the requests' own deadline, so that a link which gave up on an
  // unreachable server reports that (the clearer error) before the future times out.
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(opts_.timeout_seconds + 0.5));
  return std::make_shared<PsFuture>(str("worker ", opts_.worker_id, ": ", what), parts, deadline);
}

std::shared_ptr<PendingRequest> Client::request(PsOp op, std::string what,
                                                const std::shared_ptr<PsFuture>& f) {
  auto r = std::make_shared<PendingRequest>();
  r->op = op;
  r->what = std::move(what);
  r->future = f;
  auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                     std::chrono::duration<double>(opts_.timeout_seconds));
  r->deadline = deadline;
  return r;
}

void Client::send(int shard, std::shared_ptr<PendingRequest> req, const std::string& key,
                  const std::function<void(Writer&)>& body) {
  uint64_t clk = clock_.load();
  links_[size_t(shard)]->submit(req, [&](uint64_t mseq) {
    Writer w;
    w.head(RequestHead{session_, uint32_t(opts_.worker_id), clk, mseq, key});
    if (body) body(w);
    return w.finish();
  });
}

void Client::note_read(uint64_t at_clock, Reader& meta) {
  uint64_t min_clock = meta.u64();
  uint64_t gap = at_clock > min_clock ? at_clock - min_clock : 0;
  uint64_t cur = max_staleness_.load();
  while (gap > cur && !max_staleness_.compare_exchange_weak(cur, gap)) {
  }
}

Client::DenseInfo Client::dense(const std::string& name, uint64_t numel, const char* op) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = dense_.find(name);
  GW_CHECK_ARG(it != dense_.end(), op, "('", name, "'): not registered by worker ", opts_.worker_id,
               "; call register_dense first");
  GW_CHECK_ARG(it->second.part->numel() == numel, op, "('", name, "'): tensor has ", numel,
               " elements but '", name, "' was registered with shape ", shape_str(it->second.shape),
               " (", it->second.part->numel(), " elements)");
  return it->second;
}

Client::TableInfo Client::table(const std::string& name, const char* op) {
  std::lock_guard<std::mutex> lk(mu_);
  auto it = tables_.find(name);
  GW_CHECK_ARG(it != tables_.end(), op, "('", name, "'): not registered by worker ",
               opts_.worker_id, "; call register_sparse first");
  return it->second;
}

std::shared_ptr<PsFuture> Client::register_dense(const std::string& name,
                                                 const std::vector<int64_t>& shape,
                                                 const float* init, const OptSpec& opt,
                                                 const std::string& codec) {
  opt.validate();
  CodecSpec spec;
  if (!codec.empty()) {
    try {
      spec = CodecSpec::parse(codec);
    } catch (const InvalidArgument& e) {
      GW_THROW(InvalidArgument, "register_dense('", name, "'): compression: ", e.what());
    }
  }
  uint64_t numel = 1;
  for (int64_t d : shape) {
    GW_CHECK_ARG(d >= 0, "register_dense('", name, "'): negative dimension in ", shape_str(shape));
    numel *= uint64_t(d);
  }
  GW_CHECK_ARG(numel > 0, "register_dense('", name, "'): the tensor is empty");
  auto part =
      std::make_shared<DensePartition>(name, numel, Config::get().ps_block_elems, num_servers());
  {
    std::lock_guard<std::mutex> lk(mu_);
    GW_CHECK_ARG(!tables_.count(name), "register_dense('", name,
                 "'): the name is already a sparse table");
    auto it = dense_.find(name);
    GW_CHECK_ARG(it == dense_.end() || it->second.shape == shape, "register_dense('", name,
                 "'): already registered by this worker with shape ", shape_str(it->second.shape));
    dense_[name] = DenseInfo{shape, part, spec};
  }
  std::vector<int> shards;
  for (int s = 0; s < num_servers(); ++s) {
    if (part->shard_elems(s) > 0) shards.push_back(s);
  }
  auto f = future(str("register_dense('", name, "')"), int(shards.size()));
  for (int s : shards) {
    auto req = request(PsOp::kRegisterDense, f->description(), f);
    if (opts_.worker_id == 0) req->data = block_iovecs(part->blocks_of(s), init);
    send(s, req, name, [&](Writer& w) {
      w.i64s(shape);
      w.u64(Config::get().ps_block_elems);
      w.u32(uint32_t(num_servers()));
      opt.encode(w);
    });
  }
  return f;
}

std::shared_ptr<PsFuture> Client::dense_op(PsOp op, const std::string& name, const float* grad,
                                           float* out, uint64_t numel) {
  const DenseInfo info = dense(name, numel, op_name(op));
  const DensePartition& part = *info.part;
  std::vector<int> shards;
  for (int s = 0; s < num_servers(); ++s) {
    if (part.shard_elems(s) > 0) shards.push_back(s);
  }
  auto f = future(str(op_name(op), "('", name, "')"), int(shards.size()));
  std::vector<std::pair<ServerLink*, std::shared_ptr<PendingRequest>>> parts;
  uint64_t clk = clock_.load();
  const bool compressed = grad && info.codec.lossy();
  for (int s : shards) {
    auto req = request(op, f->description(), f);
    uint64_t seed = 0;
    if (compressed) {
      // The shard's blocks in order, compensated and encoded (ps/push_codec.h).
      std::vector<float> x(part.shard_elems(s));
      size_t at = 0;
      for (const Block& b : part.blocks_of(s)) {
        memcpy(x.data() + at, grad + b.offset, b.count * sizeof(float));
        at += b.count;
      }
      uint64_t n = push_seed_++;
      seed = uint64_t(codec::hash_index(session_, n)) << 32 | codec::hash_index(~session_, n);
      encode_push(info.codec, &residuals_, str(name, "/", s), x.data(), x.size(), seed,
                  &req->owned);
      req->data = {{req->owned.data(), req->owned.size()}};
      push_wire_bytes_ += req->owned.size();
      push_dense_bytes_ += x.size() * sizeof(float);
    } else if (grad) {
      req->data = block_iovecs(part.blocks_of(s), grad);
      push_wire_bytes_ += part.shard_elems(s) * sizeof(float);
      push_dense_bytes_ += part.shard_elems(s) * sizeof(float);
    }
    if (out) {
      req->reply_into = block_iovecs(part.blocks_of(s), out);
      req->on_meta = [this, clk](Reader& r) { note_read(clk, r); };
    }
    std::function<void(Writer&)> trailer;
    if (compressed) {
      trailer = [&](Writer& w) {
        w.str(info.codec.name());
        w.u64(seed);
      };
    }
    send(s, req, name, trailer);
    parts.emplace_back(links_[size_t(s)].get(), req);
  }
  f->set_cancel([parts] {
    for (auto& [link, req] : parts) link->cancel(req->seq);
  });
  return f;
}

uint64_t Client::single_copy_bytes() const {
  uint64_t n = 0;
  for (const auto& l : links_) n += l->single_copy_bytes();
  return n;
}

uint64_t Client::in_place_bytes() const {
  uint64_t n = 0;
  for (const auto& l : links_) n += l->in_place_bytes();
  return n;
}

std::shared_ptr<PsFuture> Client::push(const std::string& name, const float* grad, uint64_t numel) {
  return dense_op(PsOp::kPush, name, grad, nullptr, numel);
}

std::shared_ptr<PsFuture> Client::pull(const std::string& name, float* out, uint64_t numel) {
  return dense_op(PsOp::kPull, name, nullptr, out, numel);
}

std::shared_ptr<PsFuture> Client::push_pull(const std::string& name, const float* grad, float* out,
                                            uint64_t numel) {
  return dense_op(PsOp::kPushPull, name, grad, out, numel);
}

std::shared_ptr<PsFuture> Client::register_sparse(const std::string& table, int64_t num_rows,
                                                  uint32_t dim, const InitSpec& init,
                                                  const OptSpec& opt) {
  opt.validate();
  init.validate();
  GW_CHECK_ARG(num_rows > 0 && dim > 0, "register_sparse('", table,
               "'): num_rows and dim must be positive (got ", num_rows, " x ", dim, ")");
  {
    std::lock_guard<std::mutex> lk(mu_);
    GW_CHECK_ARG(!dense_.count(table), "register_sparse('", table,
                 "'): the name is already a dense tensor");
    auto it = tables_.find(table);
    GW_CHECK_ARG(it == tables_.end() || (it->second.num_rows == num_rows && it->second.dim == dim),
                 "register_sparse('", table, "'): already registered by this worker as ",
                 it->second.num_rows, " x ", it->second.dim);
    tables_[table] = TableInfo{num_rows, dim};
  }
  auto f = future(str("register_sparse('", table, "')"), num_servers());
  for (int s = 0; s < num_servers(); ++s) {
    send(s, request(PsOp::kRegisterSparse, f->description(), f), table, [&](Writer& w) {
      w.i64(num_rows);
      w.u32(dim);
      w.u32(uint32_t(num_servers()));
      init.encode(w);
      opt.encode(w);
    });
  }
  return f;
}

Client::RowPlan Client::plan_rows(const std::string& table, const int64_t* ids, uint64_t n,
                                  const char* op) {
  RowPlan plan;
  plan.table = this->table(table, op);
  plan.shards.resize(size_t(num_servers()));
  std::vector<std::unordered_map<int64_t, uint32_t>> slot_of(plan.shards.size());
  for (uint64_t i = 0; i < n; ++i) {
    GW_CHECK_ARG(ids[i] >= 0 && ids[i] < plan.table.num_rows, op, "('", table, "'): row id ",
                 ids[i], " is out of range [0, ", plan.table.num_rows, ")");
    size_t s = size_t(server_of_row(ids[i], num_servers()));
    ShardRows& sr = plan.shards[s];
    auto [it, fresh] = slot_of[s].emplace(ids[i], uint32_t(sr.ids.size()));
    if (fresh) sr.ids.push_back(ids[i]);
    sr.slot_pos.emplace_back(it->second, i);
  }
  return plan;
}

std::shared_ptr<PsFuture> Client::pull_rows(const std::string& table, const int64_t* ids,
                                            uint64_t n, float* out) {
  RowPlan plan = plan_rows(table, ids, n, "pull_rows");
  int parts = 0;
  for (auto& sr : plan.shards) parts += sr.ids.empty() ? 0 : 1;
  auto f = future(str("pull_rows('", table, "')"), parts);
  std::vector<std::pair<ServerLink*, std::shared_ptr<PendingRequest>>> sent;
  uint64_t clk = clock_.load();
  const uint32_t dim = plan.table.dim;
  for (int s = 0; s < num_servers(); ++s) {
    auto sr = std::make_shared<ShardRows>(std::move(plan.shards[size_t(s)]));
    if (sr->ids.empty()) continue;
    auto req = request(PsOp::kPullRows, f->description(), f);
    req->data = {{sr->ids.data(), sr->ids.size() * 8}};
    // Each distinct id travels once; its row lands at every position that asked for it.
    req->on_data = [sr, out, dim, table](const char* data, size_t bytes) {
      GW_CHECK_ARG(bytes == sr->ids.size() * dim * 4, "pull_rows('", table, "'): reply of ", bytes,
                   " bytes for ", sr->ids.size(), " rows of dim ", dim);
      const float* src = reinterpret_cast<const float*>(data);
      for (const auto& [slot, pos] : sr->slot_pos) {
        memcpy(out + pos * dim, src + size_t(slot) * dim, dim * sizeof(float));
      }
    };
    req->on_meta = [this, clk](Reader& r) { note_read(clk, r); };
    req->keep = sr;
    send(s, req, table, nullptr);
    sent.emplace_back(links_[size_t(s)].get(), req);
  }
  f->set_cancel([sent] {
    for (auto& [link, req] : sent) link->cancel(req->seq);
  });
  return f;
}

std::shared_ptr<PsFuture> Client::push_rows(const std::string& table, const int64_t* ids,
                                            uint64_t n, const float* grads) {
  RowPlan plan = plan_rows(table, ids, n, "push_rows");
  int parts = 0;
  for (auto& sr : plan.shards) parts += sr.ids.empty() ? 0 : 1;
  auto f = future(str("push_rows('", table, "')"), parts);
  const uint32_t dim = plan.table.dim;
  for (int s = 0; s < num_servers(); ++s) {
    ShardRows& sr = plan.shards[size_t(s)];
    if (sr.ids.empty()) continue;
    auto req = request(PsOp::kPushRows, f->description(), f);
    size_t count = sr.ids.size();
    // ids, then one summed gradient row per distinct id (summed in position order).
    req->owned.assign(count * 8 + count * dim * 4, 0);
    memcpy(req->owned.data(), sr.ids.data(), count * 8);
    float* sum = reinterpret_cast<float*>(req->owned.data() + count * 8);
    for (const auto& [slot, pos] : sr.slot_pos) {
      float* dst = sum + size_t(slot) * dim;
      const float* g = grads + pos * dim;
      for (uint32_t j = 0; j < dim; ++j) dst[j] += g[j];
    }
    req->data = {{req->owned.data(), req->owned.size()}};
    send(s, req, table, [&](Writer& w) {
      w.u64(count);
      w.u32(dim);
    });
  }
  return f;
}

std::shared_ptr<PsFuture> Client::clock() {
  uint64_t next = clock_.fetch_add(1) + 1;
  auto f = future(str("clock() to ", next), num_servers());
  for (int s = 0; s < num_servers(); ++s) {
    links_[size_t(s)]->submit(request(PsOp::kClock, f->description(), f), [&](uint64_t mseq) {
      Writer w;
      w.head(RequestHead{session_, uint32_t(opts_.worker_id), next, mseq, ""});
      return w.finish();
    });
  }
  return f;
}

std::shared_ptr<PsFuture> Client::checkpoint(bool collective) {
  uint64_t epoch = collective ? ++checkpoint_epoch_ : 0;
  auto f = future(collective ? "checkpoint(collective=True)" : "checkpoint()", num_servers());
  for (int s = 0; s < num_servers(); ++s) {
    send(s, request(PsOp::kCheckpoint, f->description(), f), "", [&](Writer& w) { w.u64(epoch); });
  }
  return f;
}

}  // namespace ps
}  // namespace gw
