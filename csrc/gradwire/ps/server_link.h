// A worker's connection to one parameter-server shard, kept alive across server restarts.
//
// Requests wait in `pending_` (ordered by request id) until their reply arrives. When the
// connection breaks, the link's reader thread reconnects (with backoff, until the earliest
// pending deadline) and resends every pending request in order; the server applies each
// mutation once (dedup by session and mseq) and answers the rest again. Requests whose
// deadline passes while the server is unreachable fail with a PeerError that names the shard,
// its address and the last connection error.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gradwire/ps/connection.h"
#include "gradwire/ps/future.h"
#include "gradwire/ps/messages.h"
#include "gradwire/transport/tcp/socket.h"

namespace gw {
namespace ps {

struct PendingRequest {
  PsOp op = PsOp::kPull;
  std::string what;               // "push('w')" for errors
  std::vector<iovec> data;        // request data, gathered from the caller's buffers
  std::vector<char> owned;        // request data the client built (ids, gathered rows)
  std::shared_ptr<void> keep;     // other client-built state the request refers to
  std::vector<iovec> reply_into;  // where the reply's data lands, in order (zero-copy)
  std::function<void(const char*, size_t)> on_data;  // or: called with the whole reply data
  std::function<void(Reader&)> on_meta;              // reads the reply meta of a success
  std::shared_ptr<PsFuture> future;
  std::chrono::steady_clock::time_point deadline;
  // Filled by the link.
  uint64_t seq = 0;
  std::string meta;
  // The latest send asked the server to write the reply's data into reply_into itself
  // (kReplyInPlace); set before the send, read by the link's reader thread.
  std::atomic<bool> sent_in_place{false};
};

struct LinkIdentity {
  int shard = 0;
  int num_servers = 1;
  int worker = 0;
  std::string address;
  double timeout_seconds = 300;  // also bounds a send the server stopped reading
};

class ServerLink {
 public:
  // Connects and authenticates before `deadline` (TimeoutError naming the shard otherwise).
  ServerLink(const LinkIdentity& id, std::chrono::steady_clock::time_point deadline);
  ~ServerLink();

  // encode(mseq) builds the request meta; mutations get the next mseq of this link, reads 0.
  // Requests reach the server in submission order.
  void submit(std::shared_ptr<PendingRequest> req,
              const std::function<std::string(uint64_t mseq)>& encode);
  // Forgets a request (its caller stopped waiting); this process does not touch its buffers
  // afterwards (a same-host server may still read or write them: PsFuture::remote_access).
  void cancel(uint64_t seq);
  void close();
  // Payload bytes this link moved by single copy (both directions, ps/single_copy.h).
  uint64_t single_copy_bytes() const { return single_copy_bytes_.load(); }
  // Of those, reply bytes the server wrote in place (kDataInPlace).
  uint64_t in_place_bytes() const { return in_place_bytes_.load(); }

 private:
  std::shared_ptr<Connection> connect(std::chrono::steady_clock::time_point deadline);
  // The attach exchange on a new connection (before any request on it).
  void attach(Connection& c, std::chrono::steady_clock::time_point deadline);
  // Sends a request, its data by reference when the connection allows and it is large, and
  // asking for its reply in place when that is large.
  void send_request(Connection& c, PendingRequest& req);
  void reader_loop();
  void read_reply(Connection& c, const FrameHeader& h);
  void reconnect();
  void fail_expired();

  LinkIdentity id_;
  tcp::Endpoint ep_;
  std::mutex send_mu_;  // orders submissions and resends; taken before mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::shared_ptr<Connection> conn_;  // null while disconnected
  std::map<uint64_t, std::shared_ptr<PendingRequest>> pending_;
  uint64_t next_seq_ = 1;
  uint64_t next_mseq_ = 1;
  uint64_t receiving_ = 0;  // the request whose reply data is being read
  std::string last_error_;
  std::atomic<uint64_t> single_copy_bytes_{0}, in_place_bytes_{0};
  bool closing_ = false;
  std::thread reader_;
};

}  // namespace ps
}  // namespace gw
