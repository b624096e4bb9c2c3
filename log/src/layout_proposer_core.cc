// ProposerCore: the proposer's Paxos decisions over values (docs/layout.md).

#include <fmt/format.h>

#include <algorithm>

#include "layout_rules.h"
#include "tally/log/layout_proposer.h"

namespace tally::log {

ProposerCore::ProposerCore(proto::Layout proposal, NodeId node_id,
                           std::vector<std::string> endpoints, uint32_t max_rounds)
    : proposal_(std::move(proposal)),
      node_id_(node_id),
      endpoints_(std::move(endpoints)),
      max_rounds_(std::max<uint32_t>(max_rounds, 1)),
      last_(endpoints_.size(), "no answer") {}

ProposerCore::Next ProposerCore::StartRound() {
  if (phase_ == Phase::kFinished) return Next::kFail;
  if (attempt_ == 0) {
    if (endpoints_.empty())
      return Fail(InvalidArgument("no layout server endpoints to propose to"));
    if (Status s = CheckLayout(&proposal_, proposal_.epoch(), "proposal"); !s.ok()) return Fail(s);
  }
  ++attempt_;
  rank_ = MakeRank(max_round_seen_ + 1, node_id_.value());
  max_round_seen_ = rank_.round();
  value_ = proposal_;
  best_accepted_.reset();
  ResetAnswers(Phase::kPrepare);
  return Next::kPrepare;
}

void ProposerCore::ResetAnswers(Phase phase) {
  phase_ = phase;
  answers_.assign(endpoints_.size(), Answer::kPending);
}

proto::LayoutPrepareRequest ProposerCore::PrepareRequest() const {
  proto::LayoutPrepareRequest req;
  req.set_epoch(proposal_.epoch());
  *req.mutable_rank() = rank_;
  return req;
}

proto::LayoutProposeRequest ProposerCore::ProposeRequest() const {
  proto::LayoutProposeRequest req;
  req.set_epoch(proposal_.epoch());
  *req.mutable_rank() = rank_;
  *req.mutable_layout() = value_;
  return req;
}

proto::LayoutCommitRequest ProposerCore::CommitRequest() const {
  proto::LayoutCommitRequest req;
  *req.mutable_layout() = value_;
  return req;
}

bool ProposerCore::Accepts(uint32_t attempt, Phase phase, size_t i) const {
  return attempt == attempt_ && phase == phase_ && i < answers_.size() &&
         answers_[i] == Answer::kPending;
}

void ProposerCore::NoteRank(size_t i, const proto::Rank& promised) {
  max_round_seen_ = std::max(max_round_seen_, promised.round());
  if (RankLess(rank_, promised)) {
    uint64_t& round = competitors_[promised.node_id()];
    round = std::max(round, promised.round());
    last_[i] = "outranked by " + RankToString(promised);
  }
}

void ProposerCore::NoteError(size_t i, const Status& s) { last_[i] = s.ToString(); }

ProposerCore::Next ProposerCore::Fail(Status s) {
  phase_ = Phase::kFinished;
  result_ = Result<proto::Layout>(std::move(s));
  return Next::kFail;
}

ProposerCore::Next ProposerCore::Finish(proto::Layout chosen) {
  phase_ = Phase::kFinished;
  result_ = Result<proto::Layout>(std::move(chosen));
  return Next::kDone;
}

ProposerCore::Next ProposerCore::Tally(size_t i, Answer a, Next win) {
  answers_[i] = a;
  const size_t yes =
      static_cast<size_t>(std::count(answers_.begin(), answers_.end(), Answer::kYes));
  const size_t pending =
      static_cast<size_t>(std::count(answers_.begin(), answers_.end(), Answer::kPending));
  if (yes >= majority()) return win;
  if (yes + pending >= majority()) return Next::kWait;
  // A majority can no longer say yes in this round.
  if (attempt_ >= max_rounds_) return Fail(GiveUpStatus());
  phase_ = Phase::kIdle;
  return Next::kRetry;
}

Status ProposerCore::GiveUpStatus() const {
  std::string answers;
  for (size_t i = 0; i < endpoints_.size(); ++i) {
    answers += fmt::format("{}{}: {}", i == 0 ? "" : "; ", endpoints_[i], last_[i]);
  }
  if (!competitors_.empty()) {
    std::string who;
    for (const auto& [node, round] : competitors_) {
      who += fmt::format("{}node {} (round {})", who.empty() ? "" : ", ", node, round);
    }
    return Unavailable(fmt::format(
        "layout epoch {}: no majority of {} layout servers after {} rounds; competing proposers: "
        "{}; last answers: {}; retry later, or let the other proposer finish and fetch its layout",
        proposal_.epoch(), endpoints_.size(), attempt_, who, answers));
  }
  return Unavailable(fmt::format(
      "layout epoch {}: no majority ({} of {}) of layout servers reachable after {} rounds; last "
      "answers: {}",
      proposal_.epoch(), majority(), endpoints_.size(), attempt_, answers));
}

ProposerCore::Next ProposerCore::OnPrepare(uint32_t attempt, size_t i,
                                           const Result<proto::LayoutPrepareResponse>& r) {
  if (!Accepts(attempt, Phase::kPrepare, i)) return Next::kWait;
  const uint64_t epoch = proposal_.epoch();
  if (!r.ok()) {
    const Status& s = r.status();
    if (s.code() == Code::kWrongEpoch && s.current_epoch().value_or(0) > epoch) {
      return Fail(WrongEpoch(fmt::format("layout epoch {} is superseded: layout server {} has "
                                         "committed epoch {}; fetch the latest committed layout",
                                         epoch, endpoints_[i], *s.current_epoch()))
                      .WithCurrentEpoch(*s.current_epoch()));
    }
    NoteError(i, s);
    return Tally(i, Answer::kError, Next::kPropose);
  }
  const proto::LayoutPrepareResponse& resp = *r;
  if (resp.committed()) {
    // The decided value: commit it (again) and finish with it.
    if (Status s = CheckLayout(&resp.accepted_layout(), epoch, "committed layout"); !s.ok()) {
      NoteError(i, s.WithContext("layout server " + endpoints_[i] + " answered a bad layout"));
      return Tally(i, Answer::kError, Next::kPropose);
    }
    value_ = resp.accepted_layout();
    ResetAnswers(Phase::kCommit);
    last_[i] = "committed";
    return Next::kCommit;
  }
  NoteRank(i, resp.promised_rank());
  if (!resp.promised()) return Tally(i, Answer::kNo, Next::kPropose);
  if (resp.accepted_rank().round() != 0) {
    if (Status s = CheckLayout(&resp.accepted_layout(), epoch, "accepted layout"); !s.ok()) {
      NoteError(i, s.WithContext("layout server " + endpoints_[i] + " answered a bad layout"));
      return Tally(i, Answer::kError, Next::kPropose);
    }
    if (!best_accepted_ || RankLess(*best_accepted_, resp.accepted_rank())) {
      best_accepted_ = resp.accepted_rank();
      value_ = resp.accepted_layout();  // Paxos: the highest-ranked accepted value
    }
  }
  last_[i] = "promised";
  Next next = Tally(i, Answer::kYes, Next::kPropose);
  if (next == Next::kPropose) ResetAnswers(Phase::kPropose);
  return next;
}

ProposerCore::Next ProposerCore::OnPropose(uint32_t attempt, size_t i,
                                           const Result<proto::LayoutProposeResponse>& r) {
  if (!Accepts(attempt, Phase::kPropose, i)) return Next::kWait;
  const uint64_t epoch = proposal_.epoch();
  if (!r.ok()) {
    const Status& s = r.status();
    const uint64_t current = s.current_epoch().value_or(0);
    if (s.code() == Code::kWrongEpoch && current > epoch) {
      return Fail(WrongEpoch(fmt::format("layout epoch {} is superseded: layout server {} has "
                                         "committed epoch {}; fetch the latest committed layout",
                                         epoch, endpoints_[i], current))
                      .WithCurrentEpoch(current));
    }
    NoteError(i, s);
    // WRONG_EPOCH for this very epoch: another value is committed there;
    // the next round's prepare learns it.
    return Tally(i, s.code() == Code::kWrongEpoch ? Answer::kNo : Answer::kError, Next::kCommit);
  }
  NoteRank(i, r->promised_rank());
  if (!r->accepted()) return Tally(i, Answer::kNo, Next::kCommit);
  last_[i] = "accepted";
  Next next = Tally(i, Answer::kYes, Next::kCommit);
  if (next == Next::kCommit) ResetAnswers(Phase::kCommit);
  return next;
}

ProposerCore::Next ProposerCore::OnCommit(uint32_t attempt, size_t i,
                                          const Result<proto::LayoutCommitResponse>& r) {
  if (!Accepts(attempt, Phase::kCommit, i)) return Next::kWait;
  if (!r.ok()) {
    if (r.status().code() == Code::kFailedPrecondition) {
      return Fail(
          Internal(fmt::format("layout server {} holds a different committed layout for "
                               "epoch {}: the layout Paxos invariant broke: {}",
                               endpoints_[i], value_.epoch(), r.status().ToString())));
    }
    NoteError(i, r.status());
    return Tally(i, Answer::kError, Next::kDone);
  }
  last_[i] = "committed";
  Next next = Tally(i, Answer::kYes, Next::kDone);
  if (next == Next::kDone) return Finish(value_);
  return next;
}

}  // namespace tally::log
