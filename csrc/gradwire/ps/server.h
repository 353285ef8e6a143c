// A parameter-server shard: accepts authenticated worker connections, serves their requests on
// a thread pool, logs mutations ahead of acknowledging them, checkpoints periodically and on
// demand, and resumes from checkpoint + log when restarted with the same shard id.
//
// Requests of one connection are handled in arrival order (a connection is a strand on the
// pool), so a worker's push is always handled before its next clock message. A read that the
// consistency mode holds back (and a non-root registration waiting for worker 0's) is parked,
// not blocking a thread, and retried after every mutation.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gradwire/ps/connection.h"
#include "gradwire/ps/shard_state.h"
#include "gradwire/ps/thread_pool.h"
#include "gradwire/ps/wal.h"
#include "gradwire/transport/tcp/socket.h"

namespace gw {
namespace ps {

struct ServerOptions {
  ShardConfig shard;
  std::string host = "0.0.0.0";  // listen address; "0.0.0.0" advertises a routable one
  int port = 0;
  std::string checkpoint_dir;   // empty: no checkpoints and no write-ahead log
  double checkpoint_every = 0;  // seconds; 0: only on demand (and when the log grows large)
  int threads = 4;
  // Without GRADWIRE_AUTH_TOKEN a shard listens only on a loopback address, unless this is set:
  // then anyone who can reach the port is served (docs/parameter-server.md, "Security").
  bool insecure = false;
  // Connections in their handshake at once (each has a thread for up to 10 s); a newer one
  // closes the oldest, so idle connections cannot use up threads or lock workers out.
  size_t max_handshakes = 64;
};

class Server {
 public:
  explicit Server(const ServerOptions& opts);  // restores, replays the log, listens
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  std::string address() const { return address_; }
  // Who may connect, in one line for the start-up message: token, loopback only, or open.
  std::string access() const { return access_; }
  // Writes a checkpoint now; returns its log generation. Needs a checkpoint directory.
  uint64_t checkpoint();
  void stop();

 private:
  struct Peer;
  struct Parked;
  struct Outgoing;
  struct WorkerSlot;
  struct Handshake;
  class InPlaceSink;

  void accept_loop();
  // Registers a new connection as in its handshake; closes the oldest one beyond the cap.
  // Null when no handshake thread became free (the caller drops the connection).
  std::shared_ptr<Handshake> admit(tcp::Socket& sock, const std::string& from);
  // False when the connection was closed for a newer one (it no longer counts either way).
  bool handshake_done(const std::shared_ptr<Handshake>& hs);
  void serve_peer(std::shared_ptr<Peer> peer, tcp::Socket sock, std::shared_ptr<Handshake> hs);
  // Connection control (ps/single_copy.h), on the connection's reader thread.
  void attach_peer(Peer& peer, const FrameHeader& h);
  // Reads a request's payload; data sent by reference is read from the worker's memory.
  void read_request(Peer& peer, const FrameHeader& h, Message* m);
  // True when a push sent by reference is read while it is applied rather than into the
  // request (no log needs its bytes, BSP does not buffer it, it is not compressed).
  bool push_read_in_place(uint32_t op, const char* meta, size_t meta_bytes) const;
  void drain(std::shared_ptr<Peer> peer);
  void handle(const std::shared_ptr<Peer>& peer, Message& m);
  // The state change of a mutation (push, push_rows, clock), live or replayed.
  // push_pull may pass `snapshot` (ShardState::push).
  void apply_mutation(PsOp op, const RequestHead& h, Reader& meta, const Message& m,
                      ValueSink* snapshot = nullptr);
  // False when a non-root registration must wait for worker 0's.
  bool register_key(PsOp op, const RequestHead& h, Reader& meta, const Message& m);
  // Applies a logged mutation during replay (no parking, no log).
  void replay(uint32_t op, Bytes& payload);
  // Runs a read (or waiting registration); false when it must stay parked.
  bool try_read(const std::shared_ptr<Peer>& peer, Message& m, std::vector<Outgoing>* out);
  void retry_parked(std::vector<Outgoing>* out);
  // The sink that writes a read's value into the worker's tensor, when the request asked for
  // it (kReplyInPlace); else null.
  std::unique_ptr<InPlaceSink> in_place_sink(const std::shared_ptr<Peer>& peer, const Message& m);
  // Sends replies (after the state lock is released); a vanished worker is skipped.
  static void send_all(std::vector<Outgoing>& out);
  // kCheckpoint: epoch 0 writes now; epoch k > 0 waits until every worker asked for epoch k.
  void checkpoint_request(const std::shared_ptr<Peer>& peer, uint64_t seq, const RequestHead& h,
                          uint64_t epoch, std::vector<Outgoing>* out);
  void checkpoint_loop();
  uint64_t checkpoint_locked();

  ServerOptions opts_;
  ShardState state_;
  std::unique_ptr<Wal> wal_;
  std::string address_;
  std::string access_;
  tcp::Socket listener_;
  std::unique_ptr<ThreadPool> pool_;

  std::mutex mu_;  // state_, wal_ appends, parked_
  std::vector<std::unique_ptr<Parked>> parked_;
  // Collective checkpoints waiting for workers: epoch -> worker -> (peer, request id).
  std::map<uint64_t, std::map<uint32_t, std::pair<std::shared_ptr<Peer>, uint64_t>>> collective_;

  std::mutex peers_mu_;
  std::vector<std::shared_ptr<Peer>> peers_;
  std::vector<std::unique_ptr<WorkerSlot>> slots_;  // by worker id
  struct PeerThread {
    std::shared_ptr<std::atomic<bool>> done;  // joined by the acceptor once set
    std::thread thread;
  };
  std::list<PeerThread> peer_threads_;
  // Connections not authenticated yet, oldest first (Handshake); the cut counters belong to
  // the acceptor thread.
  std::mutex handshakes_mu_;
  std::list<std::shared_ptr<Handshake>> handshakes_;
  size_t handshake_threads_ = 0;  // threads between their start and handshake_done()
  std::condition_variable handshake_cv_;
  uint64_t cuts_unlogged_ = 0;
  std::chrono::steady_clock::time_point last_cut_log_{};

  std::atomic<bool> stopping_{false};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::thread acceptor_, checkpointer_;
};

}  // namespace ps
}  // namespace gw
