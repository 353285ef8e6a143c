#include "gradwire/ps/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "gradwire/common/error.h"

namespace gw {
namespace ps {
namespace {

constexpr uint32_t kCheckpointMagic = 0x4b435747;  // "GWCK"
constexpr uint32_t kCheckpointVersion = 1;

class Out {
 public:
  explicit Out(const std::string& path) : path_(path), f_(fopen(path.c_str(), "wb")) {
    GW_CHECK_ARG(f_, "cannot write checkpoint ", path, ": ", strerror(errno));
  }
  ~Out() {
    if (f_) fclose(f_);
  }
  void raw(const void* p, size_t n) {
    if (n && fwrite(p, 1, n, f_) != n) GW_THROW(Error, "writing ", path_, ": ", strerror(errno));
  }
  template <typename T>
  void put(T v) {
    raw(&v, sizeof(T));
  }
  void str(const std::string& s) {
    put<uint64_t>(s.size());
    raw(s.data(), s.size());
  }
  void floats(const std::vector<float>& v) {
    put<uint64_t>(v.size());
    raw(v.data(), v.size() * 4);
  }
  void opt(const OptSpec& o) {
    Writer w;
    o.encode(w);
    str(w.finish());
  }
  void init(const InitSpec& i) {
    Writer w;
    i.encode(w);
    str(w.finish());
  }
  // Flushes to stable storage and closes.
  void commit() {
    GW_ENFORCE(fflush(f_) == 0 && fsync(fileno(f_)) == 0, "flushing ", path_, ": ",
               strerror(errno));
    fclose(f_);
    f_ = nullptr;
  }

 private:
  std::string path_;
  FILE* f_;
};

class In {
 public:
  In(const std::string& path, FILE* f) : path_(path), f_(f) {}
  ~In() { fclose(f_); }
  void raw(void* p, size_t n) {
    if (n && fread(p, 1, n, f_) != n) GW_THROW(Error, "checkpoint ", path_, " is truncated");
  }
  template <typename T>
  T get() {
    T v;
    raw(&v, sizeof(T));
    return v;
  }
  std::string str() {
    std::string s(count(1), '\0');
    raw(&s[0], s.size());
    return s;
  }
  std::vector<float> floats() {
    std::vector<float> v(count(4));
    raw(v.data(), v.size() * 4);
    return v;
  }
  OptSpec opt() {
    std::string b = str();
    Reader r(b.data(), b.size());
    return OptSpec::decode(r);
  }
  InitSpec init() {
    std::string b = str();
    Reader r(b.data(), b.size());
    return InitSpec::decode(r);
  }
  uint64_t count(size_t elem) {
    uint64_t n = get<uint64_t>();
    GW_ENFORCE(n < (1ull << 40) / elem, "checkpoint ", path_, " is corrupt (count ", n, ")");
    return n;
  }

 private:
  std::string path_;
  FILE* f_;
};

void check_same(const char* what, uint64_t saved, uint64_t now, const std::string& path) {
  GW_CHECK_ARG(saved == now, "checkpoint ", path, " was written with ", what, " = ", saved,
               " but this server runs with ", now, "; restore with the same job layout");
}

}  // namespace

std::string checkpoint_path(const std::string& dir, int shard_id) {
  return gw::str(dir, "/shard-", shard_id, ".ckpt");
}

void save_checkpoint(ShardState& s, const std::string& dir, uint64_t wal_generation) {
  const ShardConfig& c = s.config();
  std::string path = checkpoint_path(dir, c.shard_id);
  std::string tmp = path + ".tmp";
  Out o(tmp);
  o.put(kCheckpointMagic);
  o.put(kCheckpointVersion);
  o.put<uint64_t>(uint64_t(c.shard_id));
  o.put<uint64_t>(uint64_t(c.num_servers));
  o.put<uint64_t>(uint64_t(c.num_workers));
  o.put<uint64_t>(uint64_t(c.mode));
  o.put<uint64_t>(c.staleness);
  o.put<uint64_t>(c.block_elems);
  o.put<uint64_t>(wal_generation);
  for (uint64_t clk : s.clocks().all()) o.put(clk);
  o.put<uint64_t>(s.last_mseq().size());
  for (const auto& [session, mseq] : s.last_mseq()) {
    o.put(session);
    o.put(mseq);
  }
  o.put<uint64_t>(s.dense().size());
  for (const auto& [name, k] : s.dense()) {
    o.str(name);
    o.put<uint64_t>(k.shape.size());
    for (int64_t d : k.shape) o.put(d);
    o.put(k.numel);
    o.put(k.shard_elems);
    o.opt(k.opt);
    o.put(k.step);
    o.put(k.last_applied);
    o.floats(k.value);
    o.floats(k.state);
    o.put<uint64_t>(k.pending.size());
    for (const auto& [clk, p] : k.pending) {
      o.put(clk);
      o.put<int64_t>(p.pushed);
      for (const auto& g : p.per_worker) o.floats(g);
    }
  }
  o.put<uint64_t>(s.sparse().size());
  for (const auto& [name, t] : s.sparse()) {
    o.str(name);
    o.put(t.num_rows);
    o.put(t.dim);
    o.init(t.init);
    o.opt(t.opt);
    o.put(t.last_applied);
    o.put<uint64_t>(t.rows.size());
    t.rows.for_each([&](int64_t id, float* row) {
      o.put(id);
      o.put(RowStore::step(row));
      o.put<uint64_t>(t.rows.row_floats());
      o.raw(row, t.rows.row_floats() * 4);
    });
    o.put<uint64_t>(t.pending.size());
    for (const auto& [clk, p] : t.pending) {
      o.put(clk);
      o.put<int64_t>(p.pushed);
      for (size_t w = 0; w < p.per_worker.size(); ++w) {
        o.put<uint8_t>(p.pushed_by[w]);
        o.put<uint64_t>(p.per_worker[w].size());
        for (const auto& [id, g] : p.per_worker[w]) {
          o.put(id);
          o.floats(g);
        }
      }
    }
  }
  o.commit();
  GW_CHECK_ARG(::rename(tmp.c_str(), path.c_str()) == 0, "cannot rename ", tmp, " to ", path, ": ",
               strerror(errno));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);  // make the rename itself durable
    ::close(dfd);
  }
}

uint64_t load_checkpoint(ShardState& s, const std::string& dir) {
  const ShardConfig& c = s.config();
  std::string path = checkpoint_path(dir, c.shard_id);
  FILE* f = fopen(path.c_str(), "rb");
  if (!f) return 0;
  In in(path, f);
  GW_CHECK_ARG(in.get<uint32_t>() == kCheckpointMagic, path, " is not a gradwire checkpoint");
  GW_CHECK_ARG(in.get<uint32_t>() == kCheckpointVersion, path,
               " was written by another checkpoint format version");
  check_same("shard id", in.get<uint64_t>(), uint64_t(c.shard_id), path);
  check_same("num_servers", in.get<uint64_t>(), uint64_t(c.num_servers), path);
  check_same("num_workers", in.get<uint64_t>(), uint64_t(c.num_workers), path);
  uint64_t mode = in.get<uint64_t>();
  GW_CHECK_ARG(mode == uint64_t(c.mode), "checkpoint ", path, " was written in mode ",
               mode_name(Mode(mode)), " but this server runs in mode ", mode_name(c.mode));
  in.get<uint64_t>();  // staleness may change between runs
  check_same("block_elems", in.get<uint64_t>(), c.block_elems, path);
  uint64_t generation = in.get<uint64_t>();
  for (uint64_t& clk : s.clocks().mutable_all()) clk = in.get<uint64_t>();
  for (uint64_t n = in.count(16); n > 0; --n) {
    uint64_t session = in.get<uint64_t>();
    s.last_mseq()[session] = in.get<uint64_t>();
  }
  size_t workers = size_t(c.num_workers);
  for (uint64_t n = in.count(1); n > 0; --n) {
    std::string name = in.str();
    DenseKey k;
    k.shape.resize(in.count(8));
    for (int64_t& d : k.shape) d = in.get<int64_t>();
    k.numel = in.get<uint64_t>();
    k.shard_elems = in.get<uint64_t>();
    k.opt = in.opt();
    k.step = in.get<int64_t>();
    k.last_applied = in.get<int64_t>();
    k.value = in.floats();
    k.state = in.floats();
    for (uint64_t p = in.count(1); p > 0; --p) {
      uint64_t clk = in.get<uint64_t>();
      PendingDense& pd = k.pending[clk];
      pd.pushed = int(in.get<int64_t>());
      pd.per_worker.resize(workers);
      for (auto& g : pd.per_worker) g = in.floats();
    }
    s.dense()[name] = std::move(k);
  }
  for (uint64_t n = in.count(1); n > 0; --n) {
    std::string name = in.str();
    SparseTable t;
    t.num_rows = in.get<int64_t>();
    t.dim = in.get<uint32_t>();
    t.init = in.init();
    t.opt = in.opt();
    t.last_applied = in.get<int64_t>();
    t.rows = RowStore(t.dim, t.opt.state_slots());
    for (uint64_t r = in.count(1); r > 0; --r) {
      int64_t id = in.get<int64_t>();
      int64_t step = in.get<int64_t>();
      uint64_t floats = in.count(4);
      GW_ENFORCE(id >= 0 && floats == t.rows.row_floats(), "checkpoint ", path,
                 " is corrupt (table '", name, "': row ", id, " with ", floats,
                 " floats, expected ", t.rows.row_floats(), ")");
      bool created = false;
      float* row = t.rows.emplace(id, &created);
      GW_ENFORCE(created, "checkpoint ", path, " is corrupt (table '", name, "': row ", id,
                 " twice)");
      in.raw(row, floats * 4);
      RowStore::step(row) = step;
    }
    for (uint64_t p = in.count(1); p > 0; --p) {
      uint64_t clk = in.get<uint64_t>();
      PendingRows& pr = t.pending[clk];
      pr.pushed = int(in.get<int64_t>());
      pr.per_worker.resize(workers);
      pr.pushed_by.resize(workers);
      for (size_t w = 0; w < workers; ++w) {
        pr.pushed_by[w] = in.get<uint8_t>();
        for (uint64_t r = in.count(1); r > 0; --r) {
          int64_t id = in.get<int64_t>();
          pr.per_worker[w][id] = in.floats();
        }
      }
    }
    s.sparse()[name] = std::move(t);
  }
  return generation;
}

}  // namespace ps
}  // namespace gw
