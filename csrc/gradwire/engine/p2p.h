// Point-to-point messages in flight: torch's isend/irecv semantics on top of the transport.
//
// Matching (docs/architecture.md, "Point-to-point"):
//  * Messages between two ranks match in issue order per (peer, tag): the n-th send to rank q
//    with tag t is the message (kP2PSeqBit | n, t), and so is the n-th receive from rank p with
//    tag t on the other side. Pairs, tags and the group's collectives are independent of each
//    other.
//  * A send or receive is posted to the transport when it is issued and never waits for the
//    other side: ops complete in whatever order their messages move, so a batch of sends and
//    receives completes however each rank orders it.
//  * A receive from any source (peer kAnySource) takes the first message with its tag that
//    has arrived from any peer, in that peer's order. Until it has matched, later receives with
//    the same tag wait behind it (they are not posted), so a message never overtakes a receive
//    issued before the one that gets it.
//  * Every op has its own deadline; the first one that passes fails the communicator.
//
// Threading: only the thread executing ops (holding the communicator's execution lock) calls
// in here; the transport is single-threaded in the same way.
#pragma once

#include <exception>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <utility>

#include "gradwire/engine/work.h"
#include "gradwire/transport/transport.h"

namespace gw {

constexpr int kAnySource = -1;

struct P2POp {
  bool is_send = false;
  int peer = kAnySource;  // for a receive from any source: kAnySource until it matched
  uint32_t tag = 0;
  void* buf = nullptr;
  size_t bytes = 0;
  OpFingerprint fp;
  std::shared_ptr<Work> work;
  Clock::time_point start{};
  Clock::time_point deadline{};
  bool any_source = false;
  bool posted = false;
  Request req;
};

class P2PQueue {
 public:
  P2PQueue(int rank, std::shared_ptr<const std::string> group)
      : rank_(rank), group_(std::move(group)) {}

  // Posts the op (or defers a receive behind an unmatched any-source receive of its tag).
  void start(Transport& t, std::unique_ptr<P2POp> op);
  // Posts deferred receives whose turn came, completes the ops that are done (their callbacks
  // run here), and fails everything when an op is past its deadline (the transport is aborted,
  // peers are told). Returns the number of ops completed.
  size_t reap(Transport& t);
  // Fails every op in flight with `error` (the transport failed under them).
  void fail_all(std::exception_ptr error);
  bool empty() const { return ops_.empty(); }
  bool only_receives() const;
  size_t size() const { return ops_.size(); }

 private:
  void post_deferred(Transport& t);
  bool try_post(Transport& t, P2POp& op);
  void time_out(Transport& t, const P2POp& op);

  const int rank_;
  const std::shared_ptr<const std::string> group_;
  std::list<std::unique_ptr<P2POp>> ops_;  // in issue order
  size_t deferred_ = 0;                    // ops in ops_ not yet posted
  int next_any_ = 0;                       // where an any-source receive starts looking
  std::map<std::pair<int, uint32_t>, uint64_t> sent_, received_;
};

}  // namespace gw
