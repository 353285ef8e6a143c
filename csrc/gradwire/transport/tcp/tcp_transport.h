// TCP transport: one full-duplex connection per peer pair, established through the Store and
// authenticated (handshake.h); afterwards non-blocking sockets driven by poll() from the thread
// that executes ops. Frames follow frame.h; fragments of one message are sent in order.
#pragma once

#include <atomic>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gradwire/common/store.h"
#include "gradwire/transport/tcp/socket.h"
#include "gradwire/transport/transport.h"

namespace gw {
namespace tcp {

struct TcpOptions {
  uint32_t comm_id = 0;
  std::string secret;       // job secret for the handshake
  std::string listen_host;  // numeric address to bind and advertise
  Clock::time_point connect_deadline;
  size_t max_frame_bytes = 4 << 20;
  double probe_seconds = 1.0;
};

class TcpTransport : public Transport {
 public:
  TcpTransport(Store& store, int rank, int size, const TcpOptions& opts);
  ~TcpTransport() override;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  void begin_op(uint64_t seq, const OpFingerprint& fp, Clock::time_point deadline) override;
  void end_op() override;
  void isend(int peer, const MsgKey& key, const OpFingerprint& fp, const void* data, size_t bytes,
             Request* req) override;
  void irecv(int peer, const MsgKey& key, const OpFingerprint& fp, void* data, size_t bytes,
             Request* req) override;
  void wait(Request* req) override;
  void abort(const std::string& reason) override;
  void request_abort(const std::string& reason) override;
  uint64_t bytes_sent() const override { return bytes_sent_; }
  uint64_t bytes_received() const override { return bytes_received_; }

  const std::string& listen_address() const { return listen_address_; }

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
  };
  struct Unexpected {
    MsgKey key;
    OpFingerprint fp;
    std::vector<char> data;
    size_t got;
  };
  enum class ReadState { kHeader, kPayload };
  struct Peer {
    int rank = -1;
    Socket sock;
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
  };
  struct ProbeReply {
    bool replied = false;
    uint64_t seq = 0;
    bool in_op = false;
  };

  void connect_all(Store& store, const TcpOptions& opts);
  Peer& peer(int r);
  void enqueue_frame(Peer& p, const FrameHeader& h, const char* data, Request* req);
  void poll_once(int timeout_ms);
  bool drive_writes(Peer& p);
  bool drive_reads(Peer& p);
  void on_header(Peer& p);
  void on_frame_done(Peer& p);
  void move_to_posted(Peer& p, std::list<Unexpected>::iterator u,
                      std::list<PostedRecv>::iterator r);
  void check_match(const Peer& p, const OpFingerprint& theirs, const OpFingerprint& ours,
                   uint64_t seq, size_t their_bytes, size_t our_bytes);
  // A message no receive of its op claims: the sender ran a different op.
  [[noreturn]] void unclaimed(const Peer& p, const OpFingerprint& theirs, const OpFingerprint& ours,
                              const MsgKey& key);
  [[noreturn]] void on_timeout();
  [[noreturn]] void peer_lost(const Peer& p, const std::string& why);
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
  std::string listen_address_;
  std::vector<Peer> peers_;

  // The op being executed (for fingerprint checks, probes and error messages).
  bool in_op_ = false;
  uint64_t cur_seq_ = 0;
  OpFingerprint cur_fp_;
  Clock::time_point deadline_;
  Clock::time_point op_start_;

  std::map<int, ProbeReply> probe_replies_;
  std::map<uint64_t, OpFingerprint> recent_ops_;  // last completed ops, to diagnose late frames
  std::atomic<bool> abort_requested_{false};
  std::mutex abort_mu_;
  std::string abort_reason_;
  std::exception_ptr error_;
  uint64_t bytes_sent_ = 0;
  uint64_t bytes_received_ = 0;
};

}  // namespace tcp
}  // namespace gw
