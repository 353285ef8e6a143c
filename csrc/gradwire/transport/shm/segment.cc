#include "gradwire/transport/shm/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <new>
#include <random>

#include "gradwire/common/error.h"

namespace gw {
namespace shm {

// [Layout][RingHeader x slots][Mailbox x slots][ring data x slots], each ring's data 4 KiB
// aligned, each mailbox cache-line aligned.
struct Segment::Layout {
  uint64_t magic;
  uint32_t slots;
  uint32_t pad;
  uint64_t ring_bytes;
  uint64_t mailbox_bytes;  // payload capacity of each mailbox (0: none)
  Doorbell bell;
  CpuHint cpu;
};
namespace {
constexpr uint64_t kSegmentMagic = 0x47574d454d4853ull;  // "SHMEMWG"
constexpr size_t kPage = 4096;
constexpr size_t kMaxMailboxBytes = 1 << 20;
size_t align_up(size_t v, size_t a) { return (v + a - 1) / a * a; }
size_t mailboxes_offset(int slots) {
  return sizeof(Segment::Layout) + sizeof(RingHeader) * size_t(slots);
}
size_t headers_bytes(int slots, size_t mailbox_bytes) {
  size_t mail = mailbox_bytes ? Mailbox::footprint(mailbox_bytes) * size_t(slots) : 0;
  return align_up(mailboxes_offset(slots) + mail, kPage);
}
}  // namespace

Segment Segment::create(int slots, size_t ring_bytes, size_t mailbox_bytes, uint32_t comm_id,
                        int rank) {
  ring_bytes = align_up(ring_bytes, kPage);
  GW_CHECK_ARG(mailbox_bytes <= kMaxMailboxBytes, "mailboxes of ", mailbox_bytes,
               " bytes: at most ", kMaxMailboxBytes);
  std::random_device rd;
  Segment s;
  s.bytes_ = headers_bytes(slots, mailbox_bytes) + ring_bytes * size_t(slots);
  int fd = -1;
  for (int attempt = 0; attempt < 8 && fd < 0; ++attempt) {
    s.name_ = str("/gradwire-", comm_id, "-", rank, "-", getpid(), "-", rd());
    fd = shm_open(s.name_.c_str(), O_CREAT | O_EXCL | O_RDWR, 0600);
  }
  GW_CHECK_ARG(fd >= 0, "cannot create shared memory segment: shm_open: ", strerror(errno));
  if (ftruncate(fd, off_t(s.bytes_)) != 0) {
    int err = errno;
    ::close(fd);
    shm_unlink(s.name_.c_str());
    GW_THROW(
        Error, "cannot size shared memory segment to ", s.bytes_, " bytes: ", strerror(err),
        " (is /dev/shm large enough? set GRADWIRE_SHM_RING_BYTES lower or GRADWIRE_TRANSPORT=tcp)");
  }
  s.base_ = mmap(nullptr, s.bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (s.base_ == MAP_FAILED) {
    s.base_ = nullptr;
    shm_unlink(s.name_.c_str());
    GW_THROW(Error, "mmap of shared memory segment failed: ", strerror(errno));
  }
  s.owner_ = true;
  auto* layout =
      new (s.base_) Layout{kSegmentMagic, uint32_t(slots), 0, ring_bytes, mailbox_bytes, {}, {}};
  (void)layout;
  auto* headers = reinterpret_cast<RingHeader*>(static_cast<char*>(s.base_) + sizeof(Layout));
  for (int i = 0; i < slots; ++i) new (&headers[i]) RingHeader();
  if (mailbox_bytes) {
    char* mail = static_cast<char*>(s.base_) + mailboxes_offset(slots);
    for (int i = 0; i < slots; ++i) {
      Mailbox::init(mail + size_t(i) * Mailbox::footprint(mailbox_bytes), mailbox_bytes);
    }
  }
  return s;
}

Segment Segment::open(const std::string& name) {
  int fd = shm_open(name.c_str(), O_RDWR, 0);
  GW_CHECK_ARG(fd >= 0, "cannot open peer's shared memory segment ", name, ": ", strerror(errno));
  struct stat st;
  fstat(fd, &st);
  Segment s;
  s.bytes_ = size_t(st.st_size);
  s.name_ = name;
  s.base_ = mmap(nullptr, s.bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ::close(fd);
  if (s.base_ == MAP_FAILED) {
    s.base_ = nullptr;
    GW_THROW(Error, "mmap of peer's shared memory segment ", name, " failed: ", strerror(errno));
  }
  auto* layout = static_cast<Layout*>(s.base_);
  GW_CHECK_ARG(s.bytes_ >= sizeof(Layout) && layout->magic == kSegmentMagic,
               "shared memory segment ", name, " is not a gradwire segment");
  GW_CHECK_ARG(layout->mailbox_bytes <= kMaxMailboxBytes &&
                   s.bytes_ >= headers_bytes(int(layout->slots), layout->mailbox_bytes) +
                                   layout->ring_bytes * layout->slots,
               "shared memory segment ", name, " is shorter than its layout says");
  return s;
}

Segment::Segment(Segment&& o) noexcept { *this = std::move(o); }

Segment& Segment::operator=(Segment&& o) noexcept {
  if (this != &o) {
    if (base_) munmap(base_, bytes_);
    base_ = o.base_;
    bytes_ = o.bytes_;
    name_ = std::move(o.name_);
    owner_ = o.owner_;
    o.base_ = nullptr;
    o.owner_ = false;
  }
  return *this;
}

Segment::~Segment() {
  if (owner_) unlink();
  if (base_) munmap(base_, bytes_);
}

void Segment::unlink() {
  if (owner_ && !name_.empty()) shm_unlink(name_.c_str());
  owner_ = false;
}

Doorbell* Segment::bell() const { return &static_cast<Layout*>(base_)->bell; }

std::atomic<int32_t>* Segment::cpu_hint() const { return &static_cast<Layout*>(base_)->cpu.cpu; }

Ring Segment::ring(int slot) const {
  auto* layout = static_cast<Layout*>(base_);
  GW_ENFORCE(slot >= 0 && uint32_t(slot) < layout->slots, "bad ring slot ", slot);
  auto* headers = reinterpret_cast<RingHeader*>(static_cast<char*>(base_) + sizeof(Layout));
  char* data = static_cast<char*>(base_) +
               headers_bytes(int(layout->slots), layout->mailbox_bytes) +
               size_t(slot) * layout->ring_bytes;
  return Ring(&headers[slot], data, layout->ring_bytes);
}

size_t Segment::mailbox_bytes() const { return static_cast<Layout*>(base_)->mailbox_bytes; }

Mailbox Segment::mailbox(int slot) const {
  auto* layout = static_cast<Layout*>(base_);
  GW_ENFORCE(slot >= 0 && uint32_t(slot) < layout->slots && layout->mailbox_bytes > 0,
             "bad mailbox slot ", slot);
  size_t cap = layout->mailbox_bytes;
  char* at = static_cast<char*>(base_) + mailboxes_offset(int(layout->slots)) +
             size_t(slot) * Mailbox::footprint(cap);
  return Mailbox(at, cap);
}

}  // namespace shm
}  // namespace gw
