// The transport proper: frames (frame.h) over one Channel per peer, matched to posted receives,
// with fingerprint checks, timeout probes and abort propagation. Channels are TCP sockets or,
// for peers on the same host, shared-memory rings (mesh.h builds them). All of it is driven by
// the thread executing an op: waiting spins briefly over the shared-memory rings and sockets,
// then blocks (futex on our doorbell when every peer is local, poll() otherwise).
#pragma once

#include <array>
#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gradwire/transport/channel.h"
#include "gradwire/transport/early_buffers.h"
#include "gradwire/transport/shm/segment.h"
#include "gradwire/transport/transport.h"

namespace gw {

struct StreamOptions {
  uint32_t comm_id = 0;
  size_t max_frame_bytes = 4 << 20;
  double probe_seconds = 1.0;
  double spin_seconds = 50e-6;
  bool yield_while_spinning = false;  // set when this host's ranks outnumber its cores
  // Shared-memory peers: messages of at least this many bytes travel by single copy (the
  // receiver reads the sender's buffer, stream_transport_cma.cc); 0 disables it.
  size_t cma_min_bytes = 0;
};

// The two mailboxes (shm/mailbox.h) between this rank and a same-host peer.
struct MailLink {
  shm::Mailbox in;                     // in our segment: the peer writes, we read
  shm::Mailbox out;                    // in the peer's segment: we write, the peer reads
  shm::Doorbell* peer_bell = nullptr;  // rung (only if it sleeps) after we put or take
};

class StreamTransport : public Transport {
 public:
  // channels[r] connects to rank r (null for this rank). `own_segment` is the shared-memory
  // segment same-host peers write into (null without shared-memory peers). `mail` holds one
  // MailLink per rank when every peer is on this host and mailboxes of `mail_bytes` payload
  // bytes are on (docs/wire-protocol.md, "Mailboxes"); else it is empty.
  StreamTransport(int rank, int size, std::vector<std::unique_ptr<Channel>> channels,
                  std::shared_ptr<shm::Segment> own_segment, const StreamOptions& opts,
                  std::vector<MailLink> mail = {}, size_t mail_bytes = 0);
  ~StreamTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void begin_op(uint64_t seq, const OpFingerprint& fp, Clock::time_point deadline) override;
  void end_op() override;
  void isend(int peer, const MsgKey& key, const OpFingerprint& fp, const void* data, size_t bytes,
             Request* req) override;
  void irecv(int peer, const MsgKey& key, const OpFingerprint& fp, void* data, size_t bytes,
             Request* req) override;
  void irecv_reduce(int peer, const MsgKey& key, const OpFingerprint& fp, void* data, size_t bytes,
                    DType dtype, ReduceOp op, Request* req) override;
  void wait(Request* req) override;
  void progress_idle(int max_wait_ms) override;
  bool has_unexpected(int peer, const MsgKey& key) const override;
  void abort(const std::string& reason) override;
  void request_abort(const std::string& reason) override;
  bool all_peers_local() const override { return tcp_peers_ == 0; }
  size_t mail_bytes() const override { return mail_bytes_; }
  void mail_send(int peer, const MsgKey& key, const OpFingerprint& fp, const void* data,
                 size_t bytes) override;
  void mail_recv(int peer, const MsgKey& key, const OpFingerprint& fp, void* data, size_t bytes,
                 bool reduce, DType dtype, ReduceOp op) override;
  uint64_t bytes_sent() const override { return bytes_sent_; }
  uint64_t bytes_received() const override { return bytes_received_; }
  uint64_t bytes_single_copy() const override { return bytes_single_copy_; }
  uint64_t mail_messages() const override { return mail_messages_; }
  // "shm" / "tcp" per peer ("self" for this rank), for diagnostics.
  std::vector<std::string> channel_kinds() const;

 private:
  struct SendItem {
    FrameHeader hdr;
    const char* data;
    size_t sent;   // bytes of header + payload written so far
    Request* req;  // set on the last frame of a message
  };
  struct PostedRecv {
    MsgKey key;
    OpFingerprint fp;
    char* buf;
    size_t size;
    size_t got;
    Request* req;
    bool reduce = false;  // irecv_reduce: buf = buf (op) payload instead of a copy
    DType dtype = DType::kUInt8;
    ReduceOp op = ReduceOp::kSum;
  };
  struct Unexpected {
    MsgKey key;
    OpFingerprint fp;
    EarlyBytes data;
    size_t got;
  };
  // A single-copy send waiting for the receiver's DONE (or REFUSE). Its request completes only
  // then: until the receiver has read the buffer, the sender must not touch it.
  struct CmaSend {
    MsgKey key;
    OpFingerprint fp;
    const char* data;
    size_t bytes;
    Request* req;
    CmaOffer offer;  // the OFFER frame's payload (lives here until the frame is written)
  };
  enum class CmaState { kUnknown, kReadable, kUnreadable };
  enum class ReadState { kHeader, kPayload };
  struct Peer {
    int rank = -1;
    std::unique_ptr<Channel> ch;
    bool open = false;
    std::list<SendItem> sendq;
    std::list<PostedRecv> posted;
    std::list<Unexpected> unexpected;
    // Receive state machine.
    ReadState rstate = ReadState::kHeader;
    FrameHeader hdr{};
    size_t hdr_got = 0;
    char* dst = nullptr;
    size_t remaining = 0;
    bool target_is_posted = false;
    std::list<PostedRecv>::iterator posted_it;
    std::list<Unexpected>::iterator unexpected_it;
    std::string control;  // payload of an ABORT frame
    // Reduce-on-receive: payload goes through this cache-sized buffer into the reduction.
    std::vector<char> scratch;
    size_t scratch_fill = 0;
    std::string closed_reason;  // set when the peer's stream ended
    // Single copy: our offers awaiting an answer; whether the peer refused our offers (then we
    // send DATA frames); whether we can read the peer's memory (checked on its first offer).
    std::list<CmaSend> cma_sends;
    bool cma_refused = false;
    CmaState cma_readable = CmaState::kUnknown;
    // Mailboxes (stream_transport_mail.cc): messages put into the peer's, taken from ours.
    MailLink mail;
    uint64_t mail_sent = 0;
    uint64_t mail_taken = 0;
  };
  // Reduce-on-receive works in pieces of this many bytes, which stay in cache.
  static constexpr size_t kReducePiece = 64 << 10;
  struct RecentOp {
    uint64_t seq = 0;
    OpFingerprint fp;
  };
  struct ProbeReply {
    bool replied = false;
    uint64_t seq = 0;
    bool in_op = false;
  };

  Peer& peer(int r);
  void enqueue_frame(Peer& p, const FrameHeader& h, const char* data, Request* req);
  // The message as DATA frames of at most max_frame_bytes.
  void enqueue_data(Peer& p, const MsgKey& key, const OpFingerprint& fp, const char* data,
                    size_t bytes, Request* req);
  // Checks a message's fingerprint against the op being executed and the ops already done.
  void check_incoming(const Peer& p, const MsgKey& key, const OpFingerprint& fp);
  // Single copy (stream_transport_cma.cc).
  bool cma_eligible(const Peer& p, const MsgKey& key, size_t bytes) const;
  void cma_offer(Peer& p, const MsgKey& key, const OpFingerprint& fp, const char* data,
                 size_t bytes, Request* req);
  void on_cma_offer(Peer& p, const FrameHeader& h);
  void on_cma_answer(Peer& p, const FrameHeader& h);
  void flush_answers();
  void cma_read_into(Peer& p, const CmaOffer& offer, PostedRecv& r);
  // Mailboxes (stream_transport_mail.cc).
  void mail_wait(Peer& p, bool sending, uint64_t k);
  void begin_mail_op();
  void check_mail(const Peer& p, const shm::MailHeader& m, const MsgKey& key,
                  const OpFingerprint& fp, size_t bytes);
  // Fails on a message in a mailbox that no mailbox receive of the current op will take.
  void check_stray_mail(bool op_done);
  // The fingerprint of the op that ran as `seq`, if it is one of the recent ones.
  const OpFingerprint* recent_op(uint64_t seq) const;
  // One non-blocking pass over every channel; true when anything moved.
  bool progress();
  // Sleep until something may have arrived (or timeout_ms passes).
  void block(uint32_t bell_seen, int timeout_ms);
  bool poll_sockets(int timeout_ms);
  bool drive_writes(Peer& p);
  bool drive_reads(Peer& p);
  void on_header(Peer& p);
  void on_frame_done(Peer& p);
  void post(Peer& p, PostedRecv r);
  static void deliver(PostedRecv& r, const char* src, size_t offset, size_t n);
  bool read_reducing(Peer& p);
  void move_to_posted(Peer& p, std::list<Unexpected>::iterator u,
                      std::list<PostedRecv>::iterator r);
  void check_match(const Peer& p, const OpFingerprint& theirs, const OpFingerprint& ours,
                   uint64_t seq, size_t their_bytes, size_t our_bytes);
  // A message no receive of its op claims: the sender ran a different op.
  [[noreturn]] void unclaimed(const Peer& p, const OpFingerprint& theirs, const OpFingerprint& ours,
                              const MsgKey& key);
  [[noreturn]] void on_timeout();
  [[noreturn]] void peer_lost(const Peer& p, const std::string& why);
  // End of a peer's stream: fails now if anything pending involves the peer, else later.
  void peer_closed(Peer& p, const std::string& why);
  void check_open(const Peer& p);
  template <typename E>
  [[noreturn]] void fail(const std::string& msg, int skip_peer = -1);
  void shut_down(const std::string& reason, int skip_peer);
  void throw_if_failed();
  std::string op_description() const;

  const int rank_;
  const int size_;
  const uint32_t comm_id_;
  const size_t max_frame_bytes_;
  const double probe_seconds_;
  const Clock::duration spin_;
  const bool yield_;
  // Whether a spinning wait yields its core (see wait()): always when ranks outnumber cores,
  // else when a peer it waits for last waited on this CPU. own_cpu_ is our shm::CpuHint.
  std::atomic<int32_t>* own_cpu_ = nullptr;
  int publish_cpu();
  bool shares_core(const Peer& p, int cpu) const;
  const size_t cma_min_bytes_;
  // Early-arrival buffers kept for reuse (early_buffers.h); declared before peers_, whose
  // early messages hand their buffers back to it.
  static constexpr size_t kEarlyPoolBytes = 64 << 20;
  EarlyBufferPool early_pool_;
  std::vector<Peer> peers_;
  std::shared_ptr<shm::Segment> own_segment_;
  shm::Doorbell* bell_ = nullptr;
  int tcp_peers_ = 0;
  int shm_peers_ = 0;
  uint32_t rounds_ = 0;

  // The op being executed (for fingerprint checks, probes and error messages).
  bool in_op_ = false;
  uint64_t cur_seq_ = 0;
  OpFingerprint cur_fp_;
  Clock::time_point deadline_;
  Clock::time_point op_start_;

  std::map<int, ProbeReply> probe_replies_;
  std::array<RecentOp, 64> recent_ops_{};  // last completed ops (by seq % 64), for late frames
  // Mailboxes: payload capacity (0: off); whether the current op uses them; the peer a
  // mailbox wait waits for (-1: none), for timeout reports.
  const size_t mail_bytes_;
  bool mail_op_ = false;
  int mail_waiting_for_ = -1;
  std::atomic<bool> abort_requested_{false};
  std::mutex abort_mu_;
  std::string abort_reason_;
  std::exception_ptr error_;
  uint64_t bytes_sent_ = 0;
  uint64_t bytes_received_ = 0;
  uint64_t bytes_single_copy_ = 0;
  uint64_t mail_messages_ = 0;
};

}  // namespace gw
