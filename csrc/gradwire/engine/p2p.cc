#include "gradwire/engine/p2p.h"

#include <algorithm>
#include <vector>

#include "gradwire/common/error.h"
#include "gradwire/common/logging.h"

namespace gw {
namespace {

MsgKey p2p_key(uint64_t n, uint32_t tag) { return MsgKey{kP2PSeqBit | n, tag}; }

std::string describe(const P2POp& op) {
  std::string what = op.fp.describe();
  // "send/recv(float32 x 3)" -> "send(float32 x 3)" or "recv(...)"
  auto paren = what.find('(');
  std::string args = paren == std::string::npos ? what : what.substr(paren);
  if (op.is_send) return str("send", args, " to rank ", op.peer, ", tag ", op.tag);
  if (op.any_source && op.peer == kAnySource)
    return str("recv", args, " from any rank, tag ", op.tag);
  return str("recv", args, " from rank ", op.peer, ", tag ", op.tag);
}

}  // namespace

void P2PQueue::start(Transport& t, std::unique_ptr<P2POp> op) {
  P2POp& o = *op;
  ops_.push_back(std::move(op));
  if (deferred_ == 0 && try_post(t, o)) return;
  ++deferred_;
  post_deferred(t);
}

// Posts one op if it may go now. Sends always may; a specific receive unless an earlier
// any-source receive of its tag is still unmatched (the caller checks that); an any-source
// receive once a message with its tag has arrived from some peer.
bool P2PQueue::try_post(Transport& t, P2POp& op) {
  if (op.is_send) {
    uint64_t n = sent_[{op.peer, op.tag}]++;
    t.isend(op.peer, p2p_key(n, op.tag), op.fp, op.buf, op.bytes, &op.req);
  } else if (!op.any_source) {
    uint64_t n = received_[{op.peer, op.tag}]++;
    t.irecv(op.peer, p2p_key(n, op.tag), op.fp, op.buf, op.bytes, &op.req);
  } else {
    const int size = t.size();
    int from = -1;
    for (int k = 0; k < size && from < 0; ++k) {
      int p = (next_any_ + k) % size;
      if (p == rank_) continue;
      auto it = received_.find({p, op.tag});
      uint64_t n = it == received_.end() ? 0 : it->second;
      if (t.has_unexpected(p, p2p_key(n, op.tag))) from = p;
    }
    if (from < 0) return false;
    next_any_ = (from + 1) % size;  // the next any-source receive looks at the others first
    op.peer = from;
    op.work->set_source_rank(from);
    uint64_t n = received_[{from, op.tag}]++;
    t.irecv(from, p2p_key(n, op.tag), op.fp, op.buf, op.bytes, &op.req);
  }
  op.posted = true;
  return true;
}

void P2PQueue::post_deferred(Transport& t) {
  // Tags held up by an unmatched any-source receive: later receives with them wait too.
  std::vector<uint32_t> blocked;
  for (auto& up : ops_) {
    P2POp& op = *up;
    if (op.posted) continue;
    bool is_blocked =
        !op.is_send && std::find(blocked.begin(), blocked.end(), op.tag) != blocked.end();
    if (!is_blocked && try_post(t, op)) {
      --deferred_;
      continue;
    }
    if (!op.is_send) blocked.push_back(op.tag);
  }
}

size_t P2PQueue::reap(Transport& t) {
  if (deferred_ > 0) post_deferred(t);
  std::vector<std::unique_ptr<P2POp>> done;
  const auto now = Clock::now();
  for (auto it = ops_.begin(); it != ops_.end();) {
    P2POp& op = **it;
    if (op.posted && op.req.done) {
      done.push_back(std::move(*it));
      it = ops_.erase(it);
      continue;
    }
    if (now >= op.deadline) {
      time_out(t, op);
      break;  // time_out failed every op in flight
    }
    ++it;
  }
  // Callbacks run last: they may issue ops, which land in ops_.
  for (auto& op : done) op->work->finish(nullptr);
  return done.size();
}

void P2PQueue::time_out(Transport& t, const P2POp& op) {
  double waited = std::chrono::duration<double>(Clock::now() - op.start).count();
  std::string why = op.is_send ? str("rank ", op.peer, " has not received it")
                    : op.any_source && op.peer == kAnySource
                        ? std::string("no rank sent a matching message")
                        : str("rank ", op.peer, " has not sent a matching message");
  std::string msg = str("rank ", rank_, " of group '", *group_, "' timed out after ", waited,
                        " s in ", describe(op), ": ", why);
  GW_LOG(kWarn, msg);
  // The transport still holds this op's buffer: abort it, so nothing is written there later.
  t.abort(msg);
  fail_all(std::make_exception_ptr(TimeoutError(msg)));
}

void P2PQueue::fail_all(std::exception_ptr error) {
  std::list<std::unique_ptr<P2POp>> failed;
  failed.swap(ops_);
  deferred_ = 0;
  for (auto& op : failed) op->work->finish(error);
}

bool P2PQueue::only_receives() const {
  for (auto& op : ops_) {
    if (op->is_send) return false;
  }
  return true;
}

}  // namespace gw
