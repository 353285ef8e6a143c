// A one-message mailbox in shared memory, from one sender to one receiver: the small-message path
// (docs/wire-protocol.md, "Mailboxes"). It lives in the receiver's segment, one per sender, and
// holds the message's key, the sender's op fingerprint and up to `capacity` payload bytes.
//
// Protocol (k = 1, 2, ... counts the messages of this sender-receiver pair):
//  * The sender writes message k only once `taken` >= k - 1 (the receiver is done with message
//    k - 1), fills the header fields and payload with plain stores, then publishes with a
//    sequentially consistent store `posted` = k.
//  * The receiver expects message k once it has taken k - 1: it waits until `posted` == k (an
//    acquire load), reads the header and payload, then stores `taken` = k.
//  * `posted` and `taken` only grow, and posted - taken is 0 or 1, so no message is overwritten
//    before it was read and none is read twice. Both sides count locally and never read back
//    their own counter.
//  * A waiting side sleeps on its own doorbell with the two-phase protocol of doorbell.h; the
//    other side calls ring_if_sleeping() on it after each publish, which costs a futex syscall
//    only when someone sleeps.
// Layout: the header and the first 24 payload bytes share one cache line, so a message of a few
// elements is one line moving between the cores; `taken` has a line of its own, written by the
// receiver only.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>

namespace gw {
namespace shm {

struct MailHeader {
  std::atomic<uint64_t> posted{0};  // sender-written: messages published
  uint64_t seq = 0;                 // the message's key
  uint32_t tag = 0;
  uint32_t bytes = 0;  // payload bytes
  uint8_t fp_kind = 0, fp_dtype = 0, fp_redop = 0, pad = 0;
  int32_t fp_root = -1;
  uint64_t fp_count = 0;
  // the payload follows
};
static_assert(sizeof(MailHeader) == 40, "mailbox header layout");

class Mailbox {
 public:
  static constexpr size_t kLine = 64;
  // Bytes one mailbox of `capacity` payload bytes occupies (a multiple of the cache line).
  static size_t footprint(size_t capacity) { return taken_offset(capacity) + kLine; }

  Mailbox() = default;
  // `at` is cache-line aligned and footprint(capacity) bytes long, zeroed or constructed by init.
  Mailbox(char* at, size_t capacity) : base_(at), cap_(capacity) {}
  static void init(char* at, size_t capacity) {
    new (at) MailHeader();
    new (at + taken_offset(capacity)) std::atomic<uint64_t>(0);
  }

  bool valid() const { return base_ != nullptr; }
  size_t capacity() const { return cap_; }

  // Sender side.
  bool free_for(uint64_t k) const { return taken().load(std::memory_order_acquire) + 1 >= k; }
  // Header fields (everything but `posted`) must be set in `meta`; copies the payload, then
  // publishes message k.
  void put(uint64_t k, const MailHeader& meta, const void* data, size_t n) {
    MailHeader* h = header();
    h->seq = meta.seq;
    h->tag = meta.tag;
    h->bytes = uint32_t(n);
    h->fp_kind = meta.fp_kind;
    h->fp_dtype = meta.fp_dtype;
    h->fp_redop = meta.fp_redop;
    h->fp_root = meta.fp_root;
    h->fp_count = meta.fp_count;
    if (n) memcpy(payload_ptr(), data, n);
    h->posted.store(k, std::memory_order_seq_cst);  // pairs with the receiver's doorbell arm
  }

  // Receiver side.
  uint64_t posted() const { return header()->posted.load(std::memory_order_acquire); }
  const MailHeader& meta() const { return *header(); }
  const char* payload() const { return base_ + sizeof(MailHeader); }
  void take(uint64_t k) { taken().store(k, std::memory_order_seq_cst); }

 private:
  static size_t taken_offset(size_t capacity) {
    return (sizeof(MailHeader) + capacity + kLine - 1) / kLine * kLine;
  }
  MailHeader* header() const { return reinterpret_cast<MailHeader*>(base_); }
  char* payload_ptr() const { return base_ + sizeof(MailHeader); }
  std::atomic<uint64_t>& taken() const {
    return *reinterpret_cast<std::atomic<uint64_t>*>(base_ + taken_offset(cap_));
  }

  char* base_ = nullptr;
  size_t cap_ = 0;
};

}  // namespace shm
}  // namespace gw
