// LayoutProposer and FetchCommittedLayout: the asynchronous shells that
// carry ProposerCore's requests over a transport (docs/layout.md).

#include "tally/log/layout_proposer.h"

#include <fmt/format.h>

#include <mutex>
#include <optional>

#include "layout_rules.h"
#include "tally/net/typed.h"

namespace tally::log {

namespace {

using Done = std::function<void(Result<proto::Layout>)>;
using Next = ProposerCore::Next;

// One ProposeLayout call. Owned by the callbacks in flight (shared_ptr).
// The core runs under mu_; requests are sent and `done` runs outside it, so
// a transport that answers inline cannot deadlock us.
class ProposeRun : public std::enable_shared_from_this<ProposeRun> {
 public:
  ProposeRun(ProposerCore core, std::vector<std::shared_ptr<net::Channel>> channels,
             ProposeOptions options, Done done)
      : core_(std::move(core)),
        channels_(std::move(channels)),
        options_(options),
        done_(std::move(done)) {}

  void StartRound() {
    Run(Locked([&] { return core_.StartRound(); }));
  }

 private:
  // What to do after a step, captured under the lock.
  struct Action {
    Next next = Next::kWait;
    uint32_t attempt = 0;
    proto::LayoutPrepareRequest prepare;
    proto::LayoutProposeRequest propose;
    proto::LayoutCommitRequest commit;
    std::optional<Result<proto::Layout>> result;
    Done done;
  };

  template <typename Step>
  Action Locked(Step step) {
    std::lock_guard lock(mu_);
    Action a;
    a.next = step();
    a.attempt = core_.attempt();
    switch (a.next) {
      case Next::kPrepare:
        a.prepare = core_.PrepareRequest();
        break;
      case Next::kPropose:
        a.propose = core_.ProposeRequest();
        break;
      case Next::kCommit:
        a.commit = core_.CommitRequest();
        break;
      case Next::kDone:
      case Next::kFail:
        a.result = core_.result();
        a.done = std::move(done_);
        break;
      case Next::kWait:
      case Next::kRetry:
        break;
    }
    return a;
  }

  void Run(Action a) {
    switch (a.next) {
      case Next::kPrepare:
        SendAll<proto::LayoutPrepareResponse>(
            kLayoutPrepareMethod, a.prepare, a.attempt,
            [](ProposeRun* self, uint32_t at, size_t i, Result<proto::LayoutPrepareResponse> r) {
              self->Run(self->Locked([&] { return self->core_.OnPrepare(at, i, r); }));
            });
        break;
      case Next::kPropose:
        SendAll<proto::LayoutProposeResponse>(
            kLayoutProposeMethod, a.propose, a.attempt,
            [](ProposeRun* self, uint32_t at, size_t i, Result<proto::LayoutProposeResponse> r) {
              self->Run(self->Locked([&] { return self->core_.OnPropose(at, i, r); }));
            });
        break;
      case Next::kCommit:
        SendAll<proto::LayoutCommitResponse>(
            kLayoutCommitMethod, a.commit, a.attempt,
            [](ProposeRun* self, uint32_t at, size_t i, Result<proto::LayoutCommitResponse> r) {
              self->Run(self->Locked([&] { return self->core_.OnCommit(at, i, r); }));
            });
        break;
      case Next::kRetry:
        Retry(a.attempt);
        break;
      case Next::kDone:
      case Next::kFail:
        if (a.done) a.done(std::move(*a.result));
        break;
      case Next::kWait:
        break;
    }
  }

  template <typename Resp, typename Req, typename OnAnswer>
  void SendAll(const char* method, const Req& req, uint32_t attempt, OnAnswer on_answer) {
    for (size_t i = 0; i < channels_.size(); ++i) {
      net::CallTyped<Resp>(*channels_[i], method, req, net::CallOptions{options_.rpc_timeout},
                           [self = shared_from_this(), attempt, i, on_answer](Result<Resp> r) {
                             on_answer(self.get(), attempt, i, std::move(r));
                           });
    }
  }

  // Pauses retry_delay * attempt (jittered to [d/2, d] with a Random) on the
  // scheduler, or starts the next round at once without one.
  void Retry(uint32_t failed_attempt) {
    if (options_.scheduler == nullptr) {
      StartRound();
      return;
    }
    int64_t d = std::chrono::nanoseconds(options_.retry_delay).count() * failed_attempt;
    if (options_.random != nullptr && d > 1) {
      d = d / 2 + static_cast<int64_t>(options_.random->Uniform(static_cast<uint64_t>(d - d / 2)));
    }
    options_.scheduler->Schedule(d, [self = shared_from_this()] { self->StartRound(); });
  }

  std::mutex mu_;
  ProposerCore core_;  // GUARDED_BY(mu_)
  const std::vector<std::shared_ptr<net::Channel>> channels_;
  const ProposeOptions options_;
  Done done_;  // GUARDED_BY(mu_); moved out once, on kDone or kFail
};

// One FetchCommittedLayout call.
class FetchRun : public std::enable_shared_from_this<FetchRun> {
 public:
  FetchRun(std::vector<std::string> endpoints, Done done)
      : endpoints_(std::move(endpoints)), done_(std::move(done)), errors_(endpoints_.size()) {}

  void Start(net::Transport* transport, std::chrono::milliseconds rpc_timeout) {
    proto::LayoutCommittedRequest req;  // epoch 0: the latest
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      auto channel = transport->Connect(endpoints_[i]);
      net::CallTyped<proto::LayoutCommittedResponse>(
          *channel, kLayoutCommittedMethod, req, net::CallOptions{rpc_timeout},
          [self = shared_from_this(), i](Result<proto::LayoutCommittedResponse> r) {
            self->OnAnswer(i, std::move(r));
          });
    }
  }

 private:
  void OnAnswer(size_t i, Result<proto::LayoutCommittedResponse> r) {
    Done done;
    Result<proto::Layout> result = Status(Code::kCancelled, "unset");
    {
      std::lock_guard lock(mu_);
      if (!done_) return;  // already answered
      ++responded_;
      if (r.ok()) {
        ++answered_;
        if (!best_ || r->layout().epoch() > best_->epoch()) best_ = r->layout();
      } else if (r.status().code() == Code::kNotFound) {
        ++answered_;
      } else {
        errors_[i] = r.status().ToString();
      }
      const size_t majority = endpoints_.size() / 2 + 1;
      if (responded_ < endpoints_.size() && answered_ < majority) return;
      done = std::move(done_);
      result = Outcome();
    }
    done(std::move(result));
  }

  Result<proto::Layout> Outcome() const {
    if (best_) return *best_;
    if (answered_ > 0) {
      return NotFound(
          fmt::format("no layout is committed on any of the {} layout servers that "
                      "answered; propose one first",
                      answered_));
    }
    std::string errors;
    for (size_t i = 0; i < endpoints_.size(); ++i) {
      errors += fmt::format("{}{}: {}", i == 0 ? "" : "; ", endpoints_[i], errors_[i]);
    }
    return Unavailable("no layout server answered layout.committed: " + errors);
  }

  const std::vector<std::string> endpoints_;
  std::mutex mu_;
  Done done_;                          // GUARDED_BY(mu_)
  std::vector<std::string> errors_;    // GUARDED_BY(mu_)
  std::optional<proto::Layout> best_;  // GUARDED_BY(mu_)
  size_t responded_ = 0;               // GUARDED_BY(mu_)
  size_t answered_ = 0;                // GUARDED_BY(mu_): OK or NOT_FOUND
};

}  // namespace

LayoutProposer::LayoutProposer(net::Transport* transport, std::vector<std::string> endpoints,
                               NodeId node_id)
    : endpoints_(std::move(endpoints)), node_id_(node_id) {
  for (const std::string& e : endpoints_) channels_.push_back(transport->Connect(e));
}

void LayoutProposer::ProposeLayout(proto::Layout proposal, ProposeOptions options, Done done) {
  auto run = std::make_shared<ProposeRun>(
      ProposerCore(std::move(proposal), node_id_, endpoints_, options.max_rounds), channels_,
      options, std::move(done));
  run->StartRound();
}

void FetchCommittedLayout(net::Transport* transport, const std::vector<std::string>& endpoints,
                          Done done, std::chrono::milliseconds rpc_timeout) {
  if (endpoints.empty()) {
    done(InvalidArgument("no layout server endpoints to fetch the committed layout from"));
    return;
  }
  std::make_shared<FetchRun>(endpoints, std::move(done))->Start(transport, rpc_timeout);
}

}  // namespace tally::log
