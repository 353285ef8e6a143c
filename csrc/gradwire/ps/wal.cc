#include "gradwire/ps/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>

#include "gradwire/common/error.h"
#include "gradwire/common/logging.h"

namespace gw {
namespace ps {
namespace {

constexpr uint32_t kRecordMagic = 0x4c415747;  // "GWAL"
constexpr uint32_t kCommitMagic = 0x454e4f44;  // "DONE"

void write_fully(int fd, const struct iovec* iov, int n, const std::string& path) {
  std::vector<struct iovec> v(iov, iov + n);
  size_t at = 0;
  while (at < v.size()) {
    ssize_t w = ::writev(fd, &v[at], int(v.size() - at));
    if (w < 0) {
      if (errno == EINTR) continue;
      GW_THROW(Error, "write-ahead log ", path, ": write failed: ", strerror(errno));
    }
    size_t left = size_t(w);
    while (at < v.size() && left >= v[at].iov_len) left -= v[at++].iov_len;
    if (at < v.size()) {
      v[at].iov_base = static_cast<char*>(v[at].iov_base) + left;
      v[at].iov_len -= left;
    }
  }
}

}  // namespace

WalSync parse_wal_sync(const std::string& s) {
  if (s == "write") return WalSync::kWrite;
  if (s == "fdatasync") return WalSync::kFdatasync;
  GW_THROW(InvalidArgument, "GRADWIRE_PS_WAL_SYNC='", s, "' must be write or fdatasync");
}

std::string wal_path(const std::string& dir, int shard_id, uint64_t generation) {
  return str(dir, "/shard-", shard_id, ".wal.", generation);
}

Wal::Wal(const std::string& dir, int shard_id, WalSync sync, uint64_t generation)
    : dir_(dir), shard_id_(shard_id), sync_(sync) {
  open_generation(generation);
}

Wal::~Wal() {
  if (fd_ >= 0) ::close(fd_);
}

void Wal::open_generation(uint64_t g) {
  std::string path = wal_path(dir_, shard_id_, g);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  GW_CHECK_ARG(fd >= 0, "cannot open the write-ahead log ", path, ": ", strerror(errno));
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
  generation_ = g;
  struct stat st{};
  fstat(fd_, &st);
  bytes_ = uint64_t(st.st_size);
  synced_ = bytes_;
}

uint64_t Wal::append(uint32_t op, const std::vector<char>& payload) {
  uint32_t magic = kRecordMagic, commit = kCommitMagic;
  uint64_t n = payload.size();
  struct iovec iov[5] = {{&magic, 4},
                         {&op, 4},
                         {&n, 8},
                         {const_cast<char*>(payload.data()), payload.size()},
                         {&commit, 4}};
  write_fully(fd_, iov, 5, wal_path(dir_, shard_id_, generation_));
  bytes_ += 20 + n;
  return bytes_;
}

void Wal::sync(uint64_t end) {
  if (sync_ != WalSync::kFdatasync) return;
  std::lock_guard<std::mutex> lk(sync_mu_);
  if (synced_ >= end) return;  // another flush covered this record
  uint64_t target = bytes_;
  GW_ENFORCE(::fdatasync(fd_) == 0, "write-ahead log fdatasync: ", strerror(errno));
  synced_ = std::max(synced_, target);
}

void Wal::roll(uint64_t g) {
  open_generation(g);
  DIR* d = opendir(dir_.c_str());
  if (!d) return;
  std::string prefix = str("shard-", shard_id_, ".wal.");
  while (dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name.rfind(prefix, 0) != 0) continue;
    uint64_t gen = std::strtoull(name.c_str() + prefix.size(), nullptr, 10);
    if (gen < g) ::unlink((dir_ + "/" + name).c_str());
  }
  closedir(d);
}

void Wal::replay(const std::string& dir, int shard_id, uint64_t from,
                 const std::function<void(uint32_t, std::vector<char>&)>& fn) {
  std::vector<uint64_t> gens;
  if (DIR* d = opendir(dir.c_str())) {
    std::string prefix = str("shard-", shard_id, ".wal.");
    while (dirent* e = readdir(d)) {
      std::string name = e->d_name;
      if (name.rfind(prefix, 0) != 0) continue;
      uint64_t gen = std::strtoull(name.c_str() + prefix.size(), nullptr, 10);
      if (gen >= from) gens.push_back(gen);
    }
    closedir(d);
  }
  std::sort(gens.begin(), gens.end());
  for (uint64_t g : gens) {
    std::string path = wal_path(dir, shard_id, g);
    FILE* f = fopen(path.c_str(), "rb");
    if (!f) continue;
    size_t records = 0;
    while (true) {
      uint32_t magic = 0, op = 0, commit = 0;
      uint64_t n = 0;
      if (fread(&magic, 4, 1, f) != 1 || magic != kRecordMagic) break;
      if (fread(&op, 4, 1, f) != 1 || fread(&n, 8, 1, f) != 1) break;
      std::vector<char> payload;
      try {
        payload.resize(n);
      } catch (const std::exception&) {
        break;  // a torn length field
      }
      if (fread(payload.data(), 1, n, f) != n) break;
      if (fread(&commit, 4, 1, f) != 1 || commit != kCommitMagic) break;
      fn(op, payload);
      ++records;
    }
    GW_LOG(kInfo, "parameter server shard ", shard_id, ": replayed ", records, " records of ",
           path);
    fclose(f);
  }
}

}  // namespace ps
}  // namespace gw
