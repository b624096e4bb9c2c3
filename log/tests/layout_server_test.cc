// The layout server (Paxos acceptor) rules, driven through its plain methods
// and its registered handlers, on an in-memory RocksDB (and once on disk).

#include "tally/log/layout_server.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <stdlib.h>

#include <filesystem>
#include <future>
#include <memory>
#include <string>

#include "layout_rules.h"
#include "layout_test_util.h"
#include "tally/net/typed.h"

namespace tally::log {
namespace {

using testing::MakeLayout;
using testing::R;
using testing::SameAs;

proto::LayoutPrepareRequest PrepareReq(uint64_t epoch, const proto::Rank& rank) {
  proto::LayoutPrepareRequest req;
  req.set_epoch(epoch);
  *req.mutable_rank() = rank;
  return req;
}

proto::LayoutProposeRequest ProposeReq(uint64_t epoch, const proto::Rank& rank,
                                       const proto::Layout& layout) {
  proto::LayoutProposeRequest req;
  req.set_epoch(epoch);
  *req.mutable_rank() = rank;
  *req.mutable_layout() = layout;
  return req;
}

proto::LayoutCommitRequest CommitReq(const proto::Layout& layout) {
  proto::LayoutCommitRequest req;
  *req.mutable_layout() = layout;
  return req;
}

proto::LayoutCommittedRequest CommittedReq(uint64_t epoch) {
  proto::LayoutCommittedRequest req;
  req.set_epoch(epoch);
  return req;
}

bool HasText(const Status& s, const std::string& text) {
  return s.message().find(text) != std::string::npos;
}

class LayoutServerTest : public ::testing::Test {
 protected:
  void SetUp() override { Reopen(); }

  // Destroys the server (if open) and opens the same directory again.
  void Reopen(uint32_t io_threads = 0) {
    server_.reset();
    LayoutServerOptions o;
    o.dir = "/data/layout";
    o.env = env_.get();
    o.io_threads = io_threads;
    auto s = LayoutServer::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    server_ = std::move(*s);
  }

  std::unique_ptr<rocksdb::Env> env_{rocksdb::NewMemEnv(rocksdb::Env::Default())};
  std::unique_ptr<LayoutServer> server_;
};

TEST_F(LayoutServerTest, PromisesOnlyGrowAndEpochsAreIndependent) {
  auto p = server_->Prepare(PrepareReq(1, R(2, 1)));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->promised());
  EXPECT_EQ(CompareRanks(p->promised_rank(), R(2, 1)), 0);
  EXPECT_EQ(p->accepted_rank().round(), 0u);
  EXPECT_FALSE(p->has_accepted_layout());

  // Lower round, even with a higher node id: refused, with the promise.
  p = server_->Prepare(PrepareReq(1, R(1, 9)));
  ASSERT_TRUE(p.ok());
  EXPECT_FALSE(p->promised());
  EXPECT_EQ(CompareRanks(p->promised_rank(), R(2, 1)), 0);
  // Same round, lower node id: refused. The same rank again: promised.
  EXPECT_FALSE(server_->Prepare(PrepareReq(1, R(2, 0)))->promised());
  EXPECT_TRUE(server_->Prepare(PrepareReq(1, R(2, 1)))->promised());
  // Same round, higher node id: promised.
  EXPECT_TRUE(server_->Prepare(PrepareReq(1, R(2, 2)))->promised());
  // Another epoch has its own promises.
  EXPECT_TRUE(server_->Prepare(PrepareReq(2, R(1, 1)))->promised());
}

TEST_F(LayoutServerTest, ProposalsBelowThePromiseAreRefusedAndAcceptedValuesAreReported) {
  const proto::Layout a = MakeLayout(1, "a");
  const proto::Layout b = MakeLayout(1, "b");
  ASSERT_TRUE(server_->Prepare(PrepareReq(1, R(3, 2)))->promised());

  auto low = server_->Propose(ProposeReq(1, R(3, 1), a));
  ASSERT_TRUE(low.ok()) << low.status().ToString();
  EXPECT_FALSE(low->accepted());
  EXPECT_EQ(CompareRanks(low->promised_rank(), R(3, 2)), 0);

  auto ok = server_->Propose(ProposeReq(1, R(3, 2), a));
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->accepted());
  // A proposal above the promise is accepted without a prepare (and raises it).
  ok = server_->Propose(ProposeReq(1, R(4, 1), b));
  ASSERT_TRUE(ok.ok());
  EXPECT_TRUE(ok->accepted());
  EXPECT_FALSE(server_->Prepare(PrepareReq(1, R(3, 9)))->promised());

  // A later prepare learns the highest-ranked accepted value.
  auto p = server_->Prepare(PrepareReq(1, R(5, 1)));
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->promised());
  EXPECT_FALSE(p->committed());
  EXPECT_EQ(CompareRanks(p->accepted_rank(), R(4, 1)), 0);
  EXPECT_TRUE(SameAs(p->accepted_layout(), b));
  // Refused prepares report it too.
  p = server_->Prepare(PrepareReq(1, R(1, 1)));
  EXPECT_FALSE(p->promised());
  EXPECT_TRUE(SameAs(p->accepted_layout(), b));
}

TEST_F(LayoutServerTest, StaleEpochsAreRefusedWithTheCurrentEpoch) {
  const proto::Layout l3 = MakeLayout(3, "x");
  ASSERT_TRUE(server_->Prepare(PrepareReq(2, R(1, 1)))->promised());
  ASSERT_TRUE(server_->Commit(CommitReq(l3)).ok());
  EXPECT_EQ(server_->latest_committed_epoch(), 3u);

  auto p = server_->Prepare(PrepareReq(2, R(9, 1)));
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kWrongEpoch);
  EXPECT_EQ(p.status().current_epoch(), 3u);
  EXPECT_TRUE(HasText(p.status(), "epoch 2")) << p.status().ToString();
  auto pr = server_->Propose(ProposeReq(2, R(9, 1), MakeLayout(2, "y")));
  EXPECT_EQ(pr.status().code(), Code::kWrongEpoch);
  EXPECT_EQ(pr.status().current_epoch(), 3u);

  // The committed epoch itself: a prepare learns the decided value, the
  // same value is accepted again (idempotent), another one is refused.
  p = server_->Prepare(PrepareReq(3, R(1, 1)));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->committed());
  EXPECT_FALSE(p->promised());
  EXPECT_TRUE(SameAs(p->accepted_layout(), l3));
  pr = server_->Propose(ProposeReq(3, R(1, 1), l3));
  ASSERT_TRUE(pr.ok());
  EXPECT_TRUE(pr->accepted());
  pr = server_->Propose(ProposeReq(3, R(100, 1), MakeLayout(3, "other")));
  EXPECT_EQ(pr.status().code(), Code::kWrongEpoch);
  EXPECT_EQ(pr.status().current_epoch(), 3u);

  // Later epochs run as usual.
  EXPECT_TRUE(server_->Prepare(PrepareReq(4, R(1, 1)))->promised());
}

TEST_F(LayoutServerTest, CommitIsIdempotentAndOneLayoutPerEpoch) {
  const proto::Layout l1 = MakeLayout(1, "a");
  ASSERT_TRUE(server_->Commit(CommitReq(l1)).ok());
  ASSERT_TRUE(server_->Commit(CommitReq(l1)).ok());
  auto conflict = server_->Commit(CommitReq(MakeLayout(1, "b")));
  EXPECT_EQ(conflict.status().code(), Code::kFailedPrecondition);
  EXPECT_TRUE(HasText(conflict.status(), "epoch 1")) << conflict.status().ToString();
  auto c = server_->Committed(CommittedReq(1));
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE(SameAs(c->layout(), l1));
}

TEST_F(LayoutServerTest, CommitsMayArriveOutOfOrder) {
  EXPECT_EQ(server_->Committed(CommittedReq(0)).status().code(), Code::kNotFound);
  const proto::Layout l5 = MakeLayout(5, "five");
  const proto::Layout l3 = MakeLayout(3, "three");
  ASSERT_TRUE(server_->Commit(CommitReq(l5)).ok());
  ASSERT_TRUE(server_->Commit(CommitReq(l3)).ok());  // older: kept, not latest
  EXPECT_EQ(server_->latest_committed_epoch(), 5u);
  EXPECT_TRUE(SameAs(server_->Committed(CommittedReq(0))->layout(), l5));
  EXPECT_TRUE(SameAs(server_->Committed(CommittedReq(5))->layout(), l5));
  EXPECT_TRUE(SameAs(server_->Committed(CommittedReq(3))->layout(), l3));
  auto missing = server_->Committed(CommittedReq(4));
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_TRUE(HasText(missing.status(), "latest committed: 5")) << missing.status().ToString();
  EXPECT_EQ(server_->Prepare(PrepareReq(3, R(1, 1))).status().current_epoch(), 5u);
}

TEST_F(LayoutServerTest, MalformedRequestsNameTheFieldAndChangeNothing) {
  proto::LayoutPrepareRequest no_rank;
  no_rank.set_epoch(1);
  auto p = server_->Prepare(no_rank);
  EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(HasText(p.status(), "rank")) << p.status().ToString();
  EXPECT_EQ(server_->Prepare(PrepareReq(1, R(0, 7))).status().code(), Code::kInvalidArgument);

  proto::LayoutProposeRequest no_layout;
  no_layout.set_epoch(1);
  *no_layout.mutable_rank() = R(5, 1);
  auto pr = server_->Propose(no_layout);
  EXPECT_EQ(pr.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(HasText(pr.status(), "layout is missing")) << pr.status().ToString();

  pr = server_->Propose(ProposeReq(1, R(5, 1), MakeLayout(2, "a")));
  EXPECT_EQ(pr.status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(HasText(pr.status(), "layout.epoch is 2")) << pr.status().ToString();

  proto::Layout empty = MakeLayout(1, "a");
  empty.clear_sequencers();
  pr = server_->Propose(ProposeReq(1, R(5, 1), empty));
  EXPECT_TRUE(HasText(pr.status(), "layout.sequencers")) << pr.status().ToString();
  empty = MakeLayout(1, "a");
  empty.clear_segments();
  EXPECT_TRUE(HasText(server_->Commit(CommitReq(empty)).status(), "layout.segments"));
  EXPECT_EQ(server_->Commit(proto::LayoutCommitRequest()).status().code(), Code::kInvalidArgument);

  // None of it was recorded: a low rank is still promised, nothing committed.
  EXPECT_TRUE(server_->Prepare(PrepareReq(1, R(1, 1)))->promised());
  EXPECT_FALSE(server_->latest_committed_epoch().has_value());
}

TEST_F(LayoutServerTest, ReopeningRestoresPromisesAcceptsAndCommits) {
  const proto::Layout a2 = MakeLayout(2, "a");
  const proto::Layout c1 = MakeLayout(1, "c");
  ASSERT_TRUE(server_->Prepare(PrepareReq(2, R(3, 1)))->promised());
  ASSERT_TRUE(server_->Propose(ProposeReq(2, R(3, 1), a2))->accepted());
  ASSERT_TRUE(server_->Prepare(PrepareReq(2, R(6, 4)))->promised());
  ASSERT_TRUE(server_->Prepare(PrepareReq(7, R(2, 2)))->promised());
  ASSERT_TRUE(server_->Commit(CommitReq(c1)).ok());

  Reopen();
  ASSERT_NE(server_, nullptr);
  EXPECT_EQ(server_->latest_committed_epoch(), 1u);
  EXPECT_TRUE(SameAs(server_->Committed(CommittedReq(1))->layout(), c1));
  auto p = server_->Prepare(PrepareReq(2, R(6, 3)));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FALSE(p->promised());
  EXPECT_EQ(CompareRanks(p->promised_rank(), R(6, 4)), 0);
  EXPECT_EQ(CompareRanks(p->accepted_rank(), R(3, 1)), 0);
  EXPECT_TRUE(SameAs(p->accepted_layout(), a2));
  EXPECT_FALSE(server_->Propose(ProposeReq(2, R(6, 1), MakeLayout(2, "z")))->accepted());
  EXPECT_FALSE(server_->Prepare(PrepareReq(7, R(1, 9)))->promised());

  // A commit fences the older epochs' Paxos state, also after a reopen.
  ASSERT_TRUE(server_->Commit(CommitReq(MakeLayout(5, "e"))).ok());
  Reopen();
  EXPECT_EQ(server_->latest_committed_epoch(), 5u);
  EXPECT_EQ(server_->Prepare(PrepareReq(2, R(9, 9))).status().code(), Code::kWrongEpoch);
  EXPECT_FALSE(server_->Prepare(PrepareReq(7, R(1, 9)))->promised());
}

TEST(LayoutServerDiskTest, StateSurvivesReopenOnDisk) {
  char tmpl[] = "/tmp/tally-layout-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = std::string(tmpl) + "/nested/layout";
  {
    auto s = LayoutServer::Open(LayoutServerOptions{.dir = dir});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    ASSERT_TRUE((*s)->Prepare(PrepareReq(1, R(4, 2)))->promised());
    ASSERT_TRUE((*s)->Commit(CommitReq(MakeLayout(0, "zero"))).ok());
  }
  {
    auto s = LayoutServer::Open(LayoutServerOptions{.dir = dir});
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_FALSE((*s)->Prepare(PrepareReq(1, R(4, 1)))->promised());
    EXPECT_EQ((*s)->latest_committed_epoch(), 0u);
    // A second instance on the same directory is refused (RocksDB lock).
    EXPECT_FALSE(LayoutServer::Open(LayoutServerOptions{.dir = dir}).ok());
  }
  std::filesystem::remove_all(tmpl);
  EXPECT_EQ(LayoutServer::Open(LayoutServerOptions{}).status().code(), Code::kInvalidArgument);
}

// The handlers: typed calls through the registry, on the I/O pool.
TEST_F(LayoutServerTest, HandlersServeTheFourMethodsOnThePool) {
  Reopen(/*io_threads=*/2);
  net::ServiceRegistry registry;
  server_->Register(registry);
  auto call = [&](const std::string& method, const std::string& payload) {
    const net::Handler* h = registry.Find(method);
    EXPECT_NE(h, nullptr) << method;
    auto promise = std::make_shared<std::promise<std::pair<Status, std::string>>>();
    auto future = promise->get_future();
    if (h != nullptr) {
      (*h)(payload, [promise](Status s, std::string out) {
        promise->set_value({std::move(s), std::move(out)});
      });
    } else {
      promise->set_value({Internal("missing"), ""});
    }
    return future.get();
  };
  const proto::Layout l = MakeLayout(1, "a");
  auto [ps, pbytes] = call(kLayoutPrepareMethod, PrepareReq(1, R(1, 1)).SerializeAsString());
  ASSERT_TRUE(ps.ok()) << ps.ToString();
  proto::LayoutPrepareResponse prep;
  ASSERT_TRUE(prep.ParseFromString(pbytes));
  EXPECT_TRUE(prep.promised());
  auto [as, abytes] = call(kLayoutProposeMethod, ProposeReq(1, R(1, 1), l).SerializeAsString());
  ASSERT_TRUE(as.ok()) << as.ToString();
  EXPECT_TRUE(call(kLayoutCommitMethod, CommitReq(l).SerializeAsString()).first.ok());
  auto [cs, cbytes] = call(kLayoutCommittedMethod, CommittedReq(0).SerializeAsString());
  ASSERT_TRUE(cs.ok()) << cs.ToString();
  proto::LayoutCommittedResponse committed;
  ASSERT_TRUE(committed.ParseFromString(cbytes));
  EXPECT_TRUE(SameAs(committed.layout(), l));
  // Errors travel as statuses, with the current epoch.
  auto [ws, wbytes] = call(kLayoutPrepareMethod, PrepareReq(0, R(1, 1)).SerializeAsString());
  EXPECT_EQ(ws.code(), Code::kWrongEpoch);
  EXPECT_EQ(ws.current_epoch(), 1u);
  EXPECT_EQ(call(kLayoutProposeMethod, std::string("\x0a\x05"
                                                   "ab"))
                .first.code(),
            Code::kMalformed);
}

}  // namespace
}  // namespace tally::log
