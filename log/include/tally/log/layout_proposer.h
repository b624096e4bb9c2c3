#pragma once

// The proposer side of the layout Paxos (docs/layout.md): agrees on the
// layout of one epoch with a majority of layout servers (layout_server.h)
// by prepare -> propose -> commit.
//
// Two layers. ProposerCore is the decision logic over values (tallying
// promises, choosing the value, the next rank), driven by unit tests with
// fabricated answers. LayoutProposer is the asynchronous shell: it sends
// the core's requests over a net::Transport and feeds it the answers. It
// has no threads and never sleeps (retry pauses go through an optional
// net::Scheduler), so it runs inside the deterministic simulation.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tally/base/env.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/net/inproc_transport.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"

namespace tally::log {

struct ProposeOptions {
  // Rounds (prepare, propose, commit) before giving up with UNAVAILABLE.
  uint32_t max_rounds = 10;
  // Deadline of each RPC.
  std::chrono::milliseconds rpc_timeout{2000};
  // Pause before round n + 1: retry_delay * n, drawn from [d/2, d] when
  // `random` is set (so dueling proposers drift apart). Needs `scheduler`;
  // without one the next round starts at once.
  std::chrono::milliseconds retry_delay{5};
  net::Scheduler* scheduler = nullptr;  // not owned; outlives the call
  Random* random = nullptr;             // not owned; outlives the call
};

// One ProposeLayout run as a pure state machine. Not thread-safe; no I/O.
// Use: StartRound; on kPrepare send PrepareRequest() to every acceptor and
// feed each answer to OnPrepare; on kPropose send ProposeRequest() and feed
// OnPropose; on kCommit send CommitRequest() and feed OnCommit; on kRetry
// StartRound again (after a pause); on kDone or kFail read result().
class ProposerCore {
 public:
  enum class Next {
    kPrepare,  // a round started: send PrepareRequest() to every acceptor
    kWait,     // more answers needed
    kPropose,  // a majority promised: propose value() to every acceptor
    kCommit,   // value() is chosen: commit it to every acceptor
    kDone,     // committed on a majority: result() is the layout
    kRetry,    // this round failed; StartRound again
    kFail,     // gave up: result() is the error
  };

  // `endpoints` name the acceptors (index i in the On* calls) in messages.
  ProposerCore(proto::Layout proposal, NodeId node_id, std::vector<std::string> endpoints,
               uint32_t max_rounds);

  // Starts the next round with rank (highest round seen + 1, node_id):
  // kPrepare (send PrepareRequest(); answers carry attempt()), or kFail if
  // the proposal is malformed or there are no acceptors (INVALID_ARGUMENT).
  Next StartRound();

  proto::LayoutPrepareRequest PrepareRequest() const;
  proto::LayoutProposeRequest ProposeRequest() const;
  proto::LayoutCommitRequest CommitRequest() const;

  // Answers of acceptor `i` to the requests of `attempt`. Answers of an
  // earlier attempt or phase, and repeats, are ignored (kWait).
  Next OnPrepare(uint32_t attempt, size_t i, const Result<proto::LayoutPrepareResponse>& r);
  Next OnPropose(uint32_t attempt, size_t i, const Result<proto::LayoutProposeResponse>& r);
  Next OnCommit(uint32_t attempt, size_t i, const Result<proto::LayoutCommitResponse>& r);

  const proto::Rank& rank() const { return rank_; }
  // The value of this round: the proposal, or the highest-ranked value an
  // acceptor had accepted (the Paxos rule), or the committed one.
  const proto::Layout& value() const { return value_; }
  const Result<proto::Layout>& result() const { return result_; }
  uint32_t attempt() const { return attempt_; }
  size_t majority() const { return endpoints_.size() / 2 + 1; }

 private:
  enum class Phase { kIdle, kPrepare, kPropose, kCommit, kFinished };
  enum class Answer { kPending, kYes, kNo, kError };

  bool Accepts(uint32_t attempt, Phase phase, size_t i) const;
  void ResetAnswers(Phase phase);
  // Tallies answer `a` of acceptor i; returns the step it leads to (`win`
  // on a majority of yes).
  Next Tally(size_t i, Answer a, Next win);
  void NoteRank(size_t i, const proto::Rank& promised);
  void NoteError(size_t i, const Status& s);
  Next Fail(Status s);
  Next Finish(proto::Layout chosen);
  Status GiveUpStatus() const;

  const proto::Layout proposal_;
  const NodeId node_id_;
  const std::vector<std::string> endpoints_;
  const uint32_t max_rounds_;

  Phase phase_ = Phase::kIdle;
  uint32_t attempt_ = 0;
  uint64_t max_round_seen_ = 0;
  proto::Rank rank_;
  proto::Layout value_;
  std::optional<proto::Rank> best_accepted_;  // this round's highest accepted rank
  std::vector<Answer> answers_;               // this phase, per acceptor
  std::vector<std::string> last_;             // last answer per acceptor, for messages
  std::map<uint64_t, uint64_t> competitors_;  // node id -> highest round that outranked us
  Result<proto::Layout> result_{Status(Code::kCancelled, "proposal not finished")};
};

// The asynchronous shell. Thread-safe: calls may overlap, answers may come
// on any transport thread.
class LayoutProposer {
 public:
  // Connects to every endpoint (channels are created now; errors surface on
  // calls). `transport` must outlive every ProposeLayout completion.
  LayoutProposer(net::Transport* transport, std::vector<std::string> endpoints, NodeId node_id);

  // Agrees on the layout of epoch proposal.epoch(). `done` runs exactly once,
  // on a transport thread (or inline for INVALID_ARGUMENT), with the layout
  // committed for that epoch, which is not `proposal` if another value was
  // already accepted or committed: compare. Errors: INVALID_ARGUMENT (the
  // proposal: missing sequencers or segments), WRONG_EPOCH (a later epoch
  // is committed; current_epoch set), UNAVAILABLE (no majority after
  // max_rounds: names the competing proposers and each server's last
  // answer), INTERNAL (acceptors disagree on a committed layout).
  void ProposeLayout(proto::Layout proposal, ProposeOptions options,
                     std::function<void(Result<proto::Layout>)> done);

  const std::vector<std::string>& endpoints() const { return endpoints_; }

 private:
  std::vector<std::string> endpoints_;
  std::vector<std::shared_ptr<net::Channel>> channels_;
  NodeId node_id_;
};

// Asks every layout server for its latest committed layout and answers the
// highest epoch among the answers. It returns once every server answered or
// failed, or as soon as a majority answered: a ProposeLayout that succeeded
// committed on a majority, so its layout (or a later one) is always seen.
// `done` runs exactly once, on a transport thread (inline when `endpoints`
// is empty). Errors: INVALID_ARGUMENT (no endpoints), NOT_FOUND (servers
// answered but none has a committed layout), UNAVAILABLE (none answered;
// lists each server's error).
void FetchCommittedLayout(net::Transport* transport, const std::vector<std::string>& endpoints,
                          std::function<void(Result<proto::Layout>)> done,
                          std::chrono::milliseconds rpc_timeout = std::chrono::seconds(2));

}  // namespace tally::log
