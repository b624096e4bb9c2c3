// The layout proposer's pure core (ProposerCore), driven with fabricated
// acceptor answers: no transport, no time.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "layout_rules.h"
#include "layout_test_util.h"
#include "tally/log/layout_proposer.h"

namespace tally::log {
namespace {

using testing::Endpoints;
using testing::MakeLayout;
using testing::R;
using testing::SameAs;
using Next = ProposerCore::Next;
using PrepareResult = Result<proto::LayoutPrepareResponse>;
using ProposeResult = Result<proto::LayoutProposeResponse>;
using CommitResult = Result<proto::LayoutCommitResponse>;

PrepareResult Promise(const proto::Rank& rank) {
  proto::LayoutPrepareResponse r;
  r.set_promised(true);
  *r.mutable_promised_rank() = rank;
  return r;
}

PrepareResult PromiseAccepted(const proto::Rank& rank, const proto::Rank& accepted,
                              const proto::Layout& layout) {
  proto::LayoutPrepareResponse r = *Promise(rank);
  *r.mutable_accepted_rank() = accepted;
  *r.mutable_accepted_layout() = layout;
  return r;
}

PrepareResult Refuse(const proto::Rank& promised) {
  proto::LayoutPrepareResponse r;
  r.set_promised(false);
  *r.mutable_promised_rank() = promised;
  return r;
}

ProposeResult Accepted(bool yes, const proto::Rank& promised) {
  proto::LayoutProposeResponse r;
  r.set_accepted(yes);
  *r.mutable_promised_rank() = promised;
  return r;
}

const CommitResult kCommitted = proto::LayoutCommitResponse();

TEST(ProposerCoreTest, MajorityOfPromisesThenAcceptsThenCommits) {
  const proto::Layout mine = MakeLayout(4, "mine");
  ProposerCore core(mine, NodeId(7), Endpoints(3), 5);
  EXPECT_EQ(core.majority(), 2u);
  ASSERT_EQ(core.StartRound(), Next::kPrepare);
  EXPECT_EQ(CompareRanks(core.rank(), R(1, 7)), 0);
  EXPECT_EQ(core.PrepareRequest().epoch(), 4u);
  const uint32_t a = core.attempt();

  EXPECT_EQ(core.OnPrepare(a, 0, Promise(R(1, 7))), Next::kWait);
  EXPECT_EQ(core.OnPrepare(a, 0, Promise(R(1, 7))), Next::kWait);  // a repeat counts once
  EXPECT_EQ(core.OnPrepare(a, 1, Promise(R(1, 7))), Next::kPropose);
  EXPECT_TRUE(SameAs(core.ProposeRequest().layout(), mine));
  EXPECT_EQ(core.OnPrepare(a, 2, Promise(R(1, 7))), Next::kWait);  // late: ignored

  EXPECT_EQ(core.OnPropose(a, 2, Accepted(true, R(1, 7))), Next::kWait);
  EXPECT_EQ(core.OnPropose(a, 0, Accepted(true, R(1, 7))), Next::kCommit);
  EXPECT_TRUE(SameAs(core.CommitRequest().layout(), mine));
  EXPECT_EQ(core.OnCommit(a, 1, Unavailable("down")), Next::kWait);
  EXPECT_EQ(core.OnCommit(a, 0, kCommitted), Next::kWait);
  EXPECT_EQ(core.OnCommit(a, 2, kCommitted), Next::kDone);
  ASSERT_TRUE(core.result().ok());
  EXPECT_TRUE(SameAs(*core.result(), mine));
}

TEST(ProposerCoreTest, AdoptsTheHighestRankedAcceptedValue) {
  const proto::Layout mine = MakeLayout(2, "mine");
  const proto::Layout low = MakeLayout(2, "low");
  const proto::Layout high = MakeLayout(2, "high");
  ProposerCore core(mine, NodeId(1), Endpoints(5), 5);
  ASSERT_EQ(core.StartRound(), Next::kPrepare);
  const uint32_t a = core.attempt();
  EXPECT_EQ(core.OnPrepare(a, 0, PromiseAccepted(R(1, 1), R(1, 0), low)), Next::kWait);
  EXPECT_EQ(core.OnPrepare(a, 3, Promise(R(1, 1))), Next::kWait);
  // Round 0 means nothing accepted: ignored, the value stays `low`.
  EXPECT_EQ(core.OnPrepare(a, 2, PromiseAccepted(R(1, 1), R(0, 9), high)), Next::kPropose);
  EXPECT_TRUE(SameAs(core.value(), low));
  // Answers after the majority do not change the value.
  EXPECT_EQ(core.OnPrepare(a, 4, PromiseAccepted(R(1, 1), R(9, 9), high)), Next::kWait);
  EXPECT_TRUE(SameAs(core.ProposeRequest().layout(), low));

  ProposerCore second(mine, NodeId(1), Endpoints(3), 5);
  ASSERT_EQ(second.StartRound(), Next::kPrepare);
  EXPECT_EQ(second.OnPrepare(1, 2, PromiseAccepted(R(1, 1), R(1, 0), low)), Next::kWait);
  EXPECT_EQ(second.OnPrepare(1, 0, PromiseAccepted(R(1, 1), R(2, 0), high)), Next::kPropose);
  EXPECT_TRUE(SameAs(second.value(), high));
}

TEST(ProposerCoreTest, CommittedAnswerIsTheDecidedValue) {
  const proto::Layout decided = MakeLayout(3, "decided");
  ProposerCore core(MakeLayout(3, "mine"), NodeId(1), Endpoints(3), 5);
  ASSERT_EQ(core.StartRound(), Next::kPrepare);
  proto::LayoutPrepareResponse c;
  c.set_committed(true);
  *c.mutable_accepted_layout() = decided;
  EXPECT_EQ(core.OnPrepare(1, 1, PrepareResult(c)), Next::kCommit);
  EXPECT_TRUE(SameAs(core.CommitRequest().layout(), decided));
  EXPECT_EQ(core.OnCommit(1, 0, kCommitted), Next::kWait);
  EXPECT_EQ(core.OnCommit(1, 1, kCommitted), Next::kDone);
  EXPECT_TRUE(SameAs(*core.result(), decided));
}

TEST(ProposerCoreTest, RankRejectionBumpsTheRoundAndStaleAnswersAreIgnored) {
  ProposerCore core(MakeLayout(1, "mine"), NodeId(2), Endpoints(3), 5);
  ASSERT_EQ(core.StartRound(), Next::kPrepare);
  EXPECT_EQ(core.OnPrepare(1, 0, Promise(R(1, 2))), Next::kWait);
  EXPECT_EQ(core.OnPrepare(1, 1, Refuse(R(7, 3))), Next::kWait);
  EXPECT_EQ(core.OnPrepare(1, 2, Refuse(R(4, 5))), Next::kRetry);
  ASSERT_EQ(core.StartRound(), Next::kPrepare);
  EXPECT_EQ(core.attempt(), 2u);
  EXPECT_EQ(CompareRanks(core.rank(), R(8, 2)), 0);
  // An answer of round 1 arriving now is ignored.
  EXPECT_EQ(core.OnPrepare(1, 0, Promise(R(1, 2))), Next::kWait);
  EXPECT_EQ(core.OnPrepare(2, 0, Promise(R(8, 2))), Next::kWait);
  EXPECT_EQ(core.OnPrepare(2, 1, Promise(R(8, 2))), Next::kPropose);
  // Outranked in phase 2: retry above the rank that beat us.
  EXPECT_EQ(core.OnPropose(2, 0, Accepted(false, R(11, 3))), Next::kWait);
  EXPECT_EQ(core.OnPropose(2, 1, Accepted(false, R(9, 1))), Next::kRetry);
  ASSERT_EQ(core.StartRound(), Next::kPrepare);
  EXPECT_EQ(CompareRanks(core.rank(), R(12, 2)), 0);
}

TEST(ProposerCoreTest, GivesUpAfterMaxRoundsNamingTheCompetitors) {
  ProposerCore core(MakeLayout(1, "mine"), NodeId(2), Endpoints(3), 2);
  for (uint32_t round = 1; round <= 2; ++round) {
    ASSERT_EQ(core.StartRound(), Next::kPrepare);
    const uint64_t theirs = core.rank().round() + 1;
    EXPECT_EQ(core.OnPrepare(round, 0, Refuse(R(theirs, 9))), Next::kWait);
    Next n = core.OnPrepare(round, 1, Refuse(R(theirs, 9)));
    EXPECT_EQ(n, round < 2 ? Next::kRetry : Next::kFail);
  }
  const Status& s = core.result().status();
  EXPECT_EQ(s.code(), Code::kUnavailable);
  EXPECT_NE(s.message().find("competing proposers: node 9 (round 4)"), std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find("after 2 rounds"), std::string::npos) << s.ToString();
  EXPECT_EQ(core.StartRound(), Next::kFail);  // finished stays finished
}

TEST(ProposerCoreTest, CountsErrorsAgainstTheMajority) {
  ProposerCore core(MakeLayout(1, "mine"), NodeId(1), Endpoints(5), 1);
  ASSERT_EQ(core.StartRound(), Next::kPrepare);
  EXPECT_EQ(core.OnPrepare(1, 0, Timeout("t0")), Next::kWait);
  EXPECT_EQ(core.OnPrepare(1, 1, Unavailable("u1")), Next::kWait);
  EXPECT_EQ(core.OnPrepare(1, 2, Promise(R(1, 1))), Next::kWait);
  EXPECT_EQ(core.OnPrepare(1, 3, Promise(R(1, 1))), Next::kWait);
  EXPECT_EQ(core.OnPrepare(1, 4, Promise(R(1, 1))), Next::kPropose);
  EXPECT_EQ(core.OnPropose(1, 2, Accepted(true, R(1, 1))), Next::kWait);
  EXPECT_EQ(core.OnPropose(1, 3, Timeout("t3")), Next::kWait);
  EXPECT_EQ(core.OnPropose(1, 0, Timeout("t0 again")), Next::kWait);
  // 2 of 5 yes and 3 failed: no majority possible; the last round: give up.
  EXPECT_EQ(core.OnPropose(1, 1, Unavailable("u1 again")), Next::kFail);
  const Status& s = core.result().status();
  EXPECT_EQ(s.code(), Code::kUnavailable);
  for (const char* text : {"layout-0: TIMEOUT: t0 again", "layout-1: UNAVAILABLE: u1 again",
                           "layout-3: TIMEOUT: t3", "layout-2: accepted", "(3 of 5)"}) {
    EXPECT_NE(s.message().find(text), std::string::npos) << text << " in " << s.ToString();
  }
}

TEST(ProposerCoreTest, EpochErrorsAndMalformedProposals) {
  // A later committed epoch: superseded at once, with the current epoch.
  ProposerCore core(MakeLayout(2, "mine"), NodeId(1), Endpoints(3), 5);
  ASSERT_EQ(core.StartRound(), Next::kPrepare);
  EXPECT_EQ(core.OnPrepare(1, 0, WrongEpoch("old").WithCurrentEpoch(6)), Next::kFail);
  EXPECT_EQ(core.result().status().code(), Code::kWrongEpoch);
  EXPECT_EQ(core.result().status().current_epoch(), 6u);

  // WRONG_EPOCH for our own epoch in phase 2: another value was committed
  // there; a rejection, and the next round learns the value.
  ProposerCore lost(MakeLayout(2, "mine"), NodeId(1), Endpoints(3), 5);
  ASSERT_EQ(lost.StartRound(), Next::kPrepare);
  EXPECT_EQ(lost.OnPrepare(1, 0, Promise(R(1, 1))), Next::kWait);
  EXPECT_EQ(lost.OnPrepare(1, 1, Promise(R(1, 1))), Next::kPropose);
  EXPECT_EQ(lost.OnPropose(1, 0, WrongEpoch("taken").WithCurrentEpoch(2)), Next::kWait);
  EXPECT_EQ(lost.OnPropose(1, 1, WrongEpoch("taken").WithCurrentEpoch(2)), Next::kRetry);

  // Acceptors disagreeing on a committed layout is a broken invariant.
  ProposerCore broken(MakeLayout(2, "mine"), NodeId(1), Endpoints(1), 5);
  ASSERT_EQ(broken.StartRound(), Next::kPrepare);
  EXPECT_EQ(broken.OnPrepare(1, 0, Promise(R(1, 1))), Next::kPropose);
  EXPECT_EQ(broken.OnPropose(1, 0, Accepted(true, R(1, 1))), Next::kCommit);
  EXPECT_EQ(broken.OnCommit(1, 0, FailedPrecondition("different")), Next::kFail);
  EXPECT_EQ(broken.result().status().code(), Code::kInternal);

  proto::Layout bad = MakeLayout(2, "bad");
  bad.clear_segments();
  ProposerCore malformed(bad, NodeId(1), Endpoints(3), 5);
  EXPECT_EQ(malformed.StartRound(), Next::kFail);
  EXPECT_EQ(malformed.result().status().code(), Code::kInvalidArgument);
  EXPECT_NE(malformed.result().status().message().find("proposal.segments"), std::string::npos);
  ProposerCore nobody(MakeLayout(2, "x"), NodeId(1), {}, 5);
  EXPECT_EQ(nobody.StartRound(), Next::kFail);
  EXPECT_EQ(nobody.result().status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace tally::log
