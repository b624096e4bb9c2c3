// The layout proposer end to end against LayoutServers: on an
// InProcessNetwork driven by a SimScheduler (one thread, virtual time,
// seeded delays and drops), and once over TCP with real threads.
//
// Replay one seed of the dueling test: TALLY_SIM_SEED=N tests/layout_server_test

#include "tally/log/layout_proposer.h"

#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <future>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "layout_rules.h"
#include "layout_test_util.h"
#include "tally/base/mem_env.h"
#include "tally/log/layout_server.h"
#include "tally/net/sim_scheduler.h"
#include "tally/net/tcp_transport.h"

namespace tally::log {
namespace {

using testing::Endpoints;
using testing::MakeLayout;
using testing::R;
using testing::SameAs;

// Layout servers "layout-<i>" on one InProcessNetwork over a SimScheduler,
// each on an in-memory RocksDB that survives Stop/Start.
class LayoutSim {
 public:
  LayoutSim(uint64_t seed, int acceptors)
      : sched_(std::make_shared<net::SimScheduler>(net::SimSchedulerOptions{.seed = seed})),
        network_(std::make_unique<net::InProcessNetwork>(sched_)),
        server_transport_(network_->MakeTransport("servers")),
        endpoints_(Endpoints(acceptors)),
        acceptors_(acceptors),
        registries_(acceptors),
        servers_(acceptors) {
    for (int i = 0; i < acceptors; ++i) Start(i);
  }

  ~LayoutSim() {
    proposers_.clear();
    servers_.clear();
    network_.reset();
    sched_->RunUntilIdle();  // what the network left queued is inert now
    acceptors_.clear();
  }

  // Opens acceptor i on its directory and serves it.
  void Start(int i) {
    LayoutServerOptions o;
    o.dir = "/" + endpoints_[i];
    o.env = rocks_env_.get();
    o.io_threads = 0;  // handlers answer inline: deterministic
    auto s = LayoutServer::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    acceptors_[i] = std::move(*s);
    registries_[i] = std::make_unique<net::ServiceRegistry>();
    acceptors_[i]->Register(*registries_[i]);
    auto server = server_transport_->Listen(endpoints_[i], registries_[i].get());
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    servers_[i] = std::move(*server);
  }

  // Stops serving acceptor i and closes it (its state stays in the MemEnv).
  void Stop(int i) {
    servers_[i].reset();
    acceptors_[i].reset();
  }

  LayoutProposer& AddProposer(uint64_t node_id) {
    transports_.push_back(network_->MakeTransport("proposer-" + std::to_string(node_id)));
    proposers_.push_back(
        std::make_unique<LayoutProposer>(transports_.back().get(), endpoints_, NodeId(node_id)));
    return *proposers_.back();
  }

  // Fetches the latest committed layout, running the simulation until idle.
  std::optional<Result<proto::Layout>> Fetch() {
    if (fetch_transport_ == nullptr) fetch_transport_ = network_->MakeTransport("fetcher");
    std::optional<Result<proto::Layout>> out;
    FetchCommittedLayout(fetch_transport_.get(), endpoints_,
                         [&out](Result<proto::Layout> r) { out = std::move(r); });
    sched_->RunUntilIdle();
    return out;
  }

  // The layout acceptor i has committed for `epoch`, if any.
  std::optional<proto::Layout> CommittedOn(int i, uint64_t epoch) {
    proto::LayoutCommittedRequest req;
    req.set_epoch(epoch);
    auto r = acceptors_[i]->Committed(req);
    if (!r.ok()) return std::nullopt;
    return r->layout();
  }

  ProposeOptions Options(uint32_t max_rounds = 20) {
    ProposeOptions o;
    o.max_rounds = max_rounds;
    o.rpc_timeout = std::chrono::milliseconds(20);
    o.retry_delay = std::chrono::milliseconds(1);
    o.scheduler = sched_.get();
    return o;
  }

  net::SimScheduler& sched() { return *sched_; }
  net::InProcessNetwork& network() { return *network_; }
  LayoutServer& acceptor(int i) { return *acceptors_[i]; }
  int size() const { return static_cast<int>(endpoints_.size()); }

 private:
  std::shared_ptr<net::SimScheduler> sched_;
  std::unique_ptr<rocksdb::Env> rocks_env_{rocksdb::NewMemEnv(rocksdb::Env::Default())};
  std::unique_ptr<net::InProcessNetwork> network_;
  std::unique_ptr<net::Transport> server_transport_;
  std::vector<std::string> endpoints_;
  std::vector<std::unique_ptr<LayoutServer>> acceptors_;
  std::vector<std::unique_ptr<net::ServiceRegistry>> registries_;
  std::vector<std::unique_ptr<net::Server>> servers_;
  std::vector<std::unique_ptr<net::Transport>> transports_;
  std::vector<std::unique_ptr<LayoutProposer>> proposers_;
  std::unique_ptr<net::Transport> fetch_transport_;
};

// Proposes `layout` and runs the simulation until idle.
std::optional<Result<proto::Layout>> ProposeAndRun(LayoutSim& sim, LayoutProposer& p,
                                                   const proto::Layout& layout,
                                                   ProposeOptions options) {
  std::optional<Result<proto::Layout>> out;
  p.ProposeLayout(layout, options, [&out](Result<proto::Layout> r) {
    EXPECT_FALSE(out.has_value()) << "done ran twice";
    out = std::move(r);
  });
  sim.sched().RunUntilIdle();
  return out;
}

TEST(LayoutProposerSimTest, CommitsOnThreeAndFiveAcceptors) {
  for (int n : {3, 5}) {
    SCOPED_TRACE(std::to_string(n) + " acceptors");
    LayoutSim sim(/*seed=*/n, n);
    sim.network().SetLinkPolicy(net::MakeSeededLinkPolicy(n));
    LayoutProposer& p = sim.AddProposer(1);
    const proto::Layout e1 = MakeLayout(1, "one");
    auto r = ProposeAndRun(sim, p, e1, sim.Options());
    ASSERT_TRUE(r.has_value() && r->ok()) << (r ? r->status().ToString() : "no answer");
    EXPECT_TRUE(SameAs(**r, e1));
    for (int i = 0; i < n; ++i) {
      auto c = sim.CommittedOn(i, 1);
      ASSERT_TRUE(c.has_value()) << "acceptor " << i;
      EXPECT_TRUE(SameAs(*c, e1));
    }
    auto fetched = sim.Fetch();
    ASSERT_TRUE(fetched.has_value() && fetched->ok());
    EXPECT_TRUE(SameAs(**fetched, e1));

    // The next epoch; then proposing epoch 2 again yields the committed one,
    // and epoch 1 is superseded.
    const proto::Layout e2 = MakeLayout(2, "two");
    r = ProposeAndRun(sim, p, e2, sim.Options());
    ASSERT_TRUE(r.has_value() && r->ok()) << (r ? r->status().ToString() : "no answer");
    r = ProposeAndRun(sim, sim.AddProposer(2), MakeLayout(2, "late"), sim.Options());
    ASSERT_TRUE(r.has_value() && r->ok()) << (r ? r->status().ToString() : "no answer");
    EXPECT_TRUE(SameAs(**r, e2));
    r = ProposeAndRun(sim, p, MakeLayout(1, "stale"), sim.Options());
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status().code(), Code::kWrongEpoch) << r->status().ToString();
    EXPECT_EQ(r->status().current_epoch(), 2u);
    EXPECT_TRUE(SameAs(**sim.Fetch(), e2));
  }
}

TEST(LayoutProposerSimTest, MinorityUnreachableStillCommits) {
  LayoutSim sim(11, 5);
  sim.network().SetLinkPolicy([](std::string_view from, std::string_view to) {
    for (std::string_view cut : {"layout-3", "layout-4"}) {
      if (from == cut || to == cut) return net::LinkAction::Drop();
    }
    return net::LinkAction::Delay(100'000);
  });
  const proto::Layout l = MakeLayout(1, "l");
  auto r = ProposeAndRun(sim, sim.AddProposer(1), l, sim.Options());
  ASSERT_TRUE(r.has_value() && r->ok()) << (r ? r->status().ToString() : "no answer");
  EXPECT_TRUE(SameAs(**r, l));
  for (int i : {0, 1, 2}) EXPECT_TRUE(sim.CommittedOn(i, 1).has_value()) << i;
  for (int i : {3, 4}) EXPECT_FALSE(sim.CommittedOn(i, 1).has_value()) << i;

  // Three acceptors, one of them not listening at all.
  LayoutSim small(12, 3);
  small.Stop(1);
  r = ProposeAndRun(small, small.AddProposer(1), l, small.Options());
  ASSERT_TRUE(r.has_value() && r->ok()) << (r ? r->status().ToString() : "no answer");
}

TEST(LayoutProposerSimTest, MajorityUnreachableFailsWithUnavailable) {
  LayoutSim sim(13, 5);
  sim.network().SetLinkPolicy([](std::string_view from, std::string_view to) {
    for (std::string_view cut : {"layout-2", "layout-3"}) {
      if (from == cut || to == cut) return net::LinkAction::Drop();
    }
    return net::LinkAction::Delay(100'000);
  });
  sim.Stop(4);
  const int64_t start = sim.sched().now();
  auto r = ProposeAndRun(sim, sim.AddProposer(1), MakeLayout(1, "l"), sim.Options(3));
  ASSERT_TRUE(r.has_value());
  const Status& s = r->status();
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  for (const char* text : {"layout-2: TIMEOUT", "layout-3: TIMEOUT", "layout-4: UNAVAILABLE",
                           "layout-0: promised", "after 3 rounds"}) {
    EXPECT_NE(s.message().find(text), std::string::npos) << text << " in " << s.ToString();
  }
  for (int i : {0, 1, 2, 3}) EXPECT_FALSE(sim.CommittedOn(i, 1).has_value());
  // Three rounds of 20 ms timeouts with pauses of 1 and 2 ms between them.
  EXPECT_GE(sim.sched().now() - start, 3 * 20'000'000);

  // FetchCommittedLayout: nothing committed on those that answer.
  auto f = sim.Fetch();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->status().code(), Code::kNotFound) << f->status().ToString();
  sim.network().SetLinkPolicy(
      [](std::string_view, std::string_view) { return net::LinkAction::Drop(); });
  f = sim.Fetch();
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->status().code(), Code::kUnavailable);
  for (const char* text : {"layout-0: TIMEOUT", "layout-4: TIMEOUT"}) {
    EXPECT_NE(f->status().message().find(text), std::string::npos) << f->status().ToString();
  }
}

TEST(LayoutProposerSimTest, FetchReturnsTheHighestCommittedEpoch) {
  LayoutSim sim(14, 3);
  const proto::Layout e1 = MakeLayout(1, "one");
  const proto::Layout e3 = MakeLayout(3, "three");
  proto::LayoutCommitRequest c1, c3;
  *c1.mutable_layout() = e1;
  *c3.mutable_layout() = e3;
  for (int i : {0, 1, 2}) ASSERT_TRUE(sim.acceptor(i).Commit(c1).ok());
  for (int i : {1, 2}) ASSERT_TRUE(sim.acceptor(i).Commit(c3).ok());
  auto f = sim.Fetch();
  ASSERT_TRUE(f.has_value() && f->ok()) << (f ? f->status().ToString() : "no answer");
  EXPECT_TRUE(SameAs(**f, e3));
  // One server left: its answer is enough.
  sim.Stop(1);
  sim.Stop(2);
  f = sim.Fetch();
  ASSERT_TRUE(f.has_value() && f->ok()) << (f ? f->status().ToString() : "no answer");
  EXPECT_TRUE(SameAs(**f, e1));
}

// An acceptor that promised and accepted, then restarted, still holds both:
// the proposer is outranked, bumps its round, and must carry the accepted
// value instead of its own.
TEST(LayoutProposerSimTest, RestartedAcceptorsKeepTheirPromisesAndAccepts) {
  LayoutSim sim(15, 3);
  const proto::Layout old_value = MakeLayout(1, "old");
  proto::LayoutPrepareRequest prep;
  prep.set_epoch(1);
  *prep.mutable_rank() = R(5, 7);
  proto::LayoutProposeRequest prop;
  prop.set_epoch(1);
  *prop.mutable_rank() = R(5, 7);
  *prop.mutable_layout() = old_value;
  ASSERT_TRUE(sim.acceptor(0).Prepare(prep)->promised());
  ASSERT_TRUE(sim.acceptor(0).Propose(prop)->accepted());
  *prep.mutable_rank() = R(9, 7);
  ASSERT_TRUE(sim.acceptor(1).Prepare(prep)->promised());
  sim.Stop(0);
  sim.Stop(1);
  sim.Start(0);
  sim.Start(1);

  ProposeOptions o = sim.Options();
  o.max_rounds = 2;
  auto r = ProposeAndRun(sim, sim.AddProposer(1), MakeLayout(1, "new"), o);
  ASSERT_TRUE(r.has_value() && r->ok()) << (r ? r->status().ToString() : "no answer");
  EXPECT_TRUE(SameAs(**r, old_value));
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(SameAs(*sim.CommittedOn(i, 1), old_value));
}

// ---- dueling proposers over many seeds ----

constexpr uint64_t kDuelSeeds = 200;

struct DuelStats {
  int proposals = 0;
  int ok = 0;
  int adopted = 0;  // OK with another proposer's layout: the Paxos rule at work
};

// Two or three proposers with different values for epoch 1 on three or five
// acceptors, seeded delays (and drops on a third of the seeds), acceptor 0
// restarted mid-run on a quarter of them. Invariant: at most one layout is
// committed for the epoch, and every proposer that got OK got it.
void RunDuel(uint64_t seed, DuelStats* stats) {
  const int n = seed % 2 == 0 ? 3 : 5;
  const int proposers = 2 + static_cast<int>(seed % 3 == 1);
  const double drops = seed % 3 == 0 ? 0.05 : 0.0;
  const bool restart = seed % 4 == 0;
  LayoutSim sim(seed, n);
  sim.network().SetLinkPolicy(net::MakeSeededLinkPolicy(
      seed * 0x9E3779B97F4A7C15ULL + 1,
      net::SimLinkOptions{
          .min_delay_nanos = 50'000, .max_delay_nanos = 2'000'000, .drop_probability = drops}));
  SeededRandom random(seed ^ 0xD0E1);
  std::vector<std::unique_ptr<SeededRandom>> jitter;
  std::vector<std::optional<Result<proto::Layout>>> results(proposers);
  std::vector<proto::Layout> values;
  for (int p = 0; p < proposers; ++p) {
    values.push_back(MakeLayout(1, "p" + std::to_string(p)));
    LayoutProposer& proposer = sim.AddProposer(static_cast<uint64_t>(p + 1));
    jitter.push_back(std::make_unique<SeededRandom>(seed * 31 + static_cast<uint64_t>(p)));
    ProposeOptions o = sim.Options(30);
    o.random = jitter.back().get();
    const int64_t start = static_cast<int64_t>(random.Uniform(3'000'000));
    sim.sched().Schedule(start, [&proposer, &results, &values, o, p] {
      proposer.ProposeLayout(values[p], o, [&results, p](Result<proto::Layout> r) {
        EXPECT_FALSE(results[p].has_value()) << "done ran twice";
        results[p] = std::move(r);
      });
    });
  }
  if (restart) {
    const int64_t down = static_cast<int64_t>(random.Uniform(4'000'000));
    const int64_t up = down + 100'000 + static_cast<int64_t>(random.Uniform(3'000'000));
    sim.sched().Schedule(down, [&sim] { sim.Stop(0); });
    sim.sched().Schedule(up, [&sim] { sim.Start(0); });
  }
  sim.sched().RunUntilIdle(1'000'000);
  ASSERT_EQ(sim.sched().pending(), 0u) << "did not go idle";

  std::optional<proto::Layout> decided;
  for (int p = 0; p < proposers; ++p) {
    ASSERT_TRUE(results[p].has_value()) << "proposer " << p << " never finished";
    ++stats->proposals;
    if (!results[p]->ok()) {
      EXPECT_EQ(results[p]->status().code(), Code::kUnavailable) << results[p]->status().ToString();
      continue;
    }
    ++stats->ok;
    if (!SameLayout(**results[p], values[p])) ++stats->adopted;
    if (!decided) decided = **results[p];
    EXPECT_TRUE(SameAs(**results[p], *decided)) << "proposers got different layouts";
  }
  for (int i = 0; i < n; ++i) {
    std::optional<proto::Layout> c = sim.CommittedOn(i, 1);
    if (!c) continue;
    if (!decided) decided = *c;
    EXPECT_TRUE(SameAs(*c, *decided)) << "acceptor " << i << " committed another layout";
  }
  if (decided) {
    bool proposed = false;
    for (const proto::Layout& v : values) proposed = proposed || SameLayout(v, *decided);
    EXPECT_TRUE(proposed) << "decided a layout nobody proposed";
  }
  if (drops == 0) {
    // Without drops every proposer finishes with the decided layout.
    for (int p = 0; p < proposers; ++p) EXPECT_TRUE(results[p]->ok()) << "proposer " << p;
    sim.network().SetLinkPolicy(nullptr);
    auto f = sim.Fetch();
    ASSERT_TRUE(f.has_value() && f->ok());
    EXPECT_TRUE(SameAs(**f, *decided));
  }
}

std::vector<uint64_t> DuelSeeds() {
  if (const char* env = std::getenv("TALLY_SIM_SEED"); env != nullptr && *env != '\0') {
    return {std::strtoull(env, nullptr, 10)};
  }
  std::vector<uint64_t> seeds;
  for (uint64_t s = 1; s <= kDuelSeeds; ++s) seeds.push_back(s);
  return seeds;
}

TEST(LayoutProposerSimTest, DuelingProposersAgreeOnOneLayoutPerEpoch) {
  DuelStats stats;
  for (uint64_t seed : DuelSeeds()) {
    SCOPED_TRACE("seed " + std::to_string(seed) +
                 " (replay: TALLY_SIM_SEED=" + std::to_string(seed) + " tests/layout_server_test)");
    RunDuel(seed, &stats);
    if (HasFailure()) break;  // one replayable seed is enough to report
  }
  // Liveness, loosely: drops make some proposers give up, not most.
  EXPECT_GE(stats.ok * 10, stats.proposals * 9) << stats.ok << " of " << stats.proposals;
  std::cout << "[ duel     ] " << stats.proposals << " proposals, " << stats.ok << " OK, "
            << stats.adopted << " finished with another proposer's layout\n";
}

// Real threads and sockets: three layout servers on disk behind TCP, three
// proposers racing for epoch 1 from their own transports, retry pauses on a
// ThreadScheduler. Every proposer gets the same layout.
TEST(LayoutProposerTcpTest, ConcurrentProposersAgreeOverTcp) {
  char tmpl[] = "/tmp/tally-layout-tcp-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string root = tmpl;
  net::TcpTransport server_transport(net::TcpOptions{.io_threads = 2});
  std::vector<std::unique_ptr<LayoutServer>> acceptors;
  std::vector<std::unique_ptr<net::ServiceRegistry>> registries;
  std::vector<std::unique_ptr<net::Server>> servers;
  std::vector<std::string> endpoints;
  for (int i = 0; i < 3; ++i) {
    auto a = LayoutServer::Open(LayoutServerOptions{.dir = root + "/l" + std::to_string(i)});
    ASSERT_TRUE(a.ok()) << a.status().ToString();
    acceptors.push_back(std::move(*a));
    registries.push_back(std::make_unique<net::ServiceRegistry>());
    acceptors.back()->Register(*registries.back());
    auto server = server_transport.Listen("127.0.0.1:0", registries.back().get());
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    endpoints.push_back((*server)->endpoint());
    servers.push_back(std::move(*server));
  }
  {
    net::ThreadScheduler pauses;
    std::vector<std::unique_ptr<net::TcpTransport>> transports;
    std::vector<std::unique_ptr<LayoutProposer>> proposers;
    std::vector<std::unique_ptr<SeededRandom>> jitter;
    std::vector<std::promise<Result<proto::Layout>>> promises(3);
    for (int p = 0; p < 3; ++p) {
      transports.push_back(std::make_unique<net::TcpTransport>());
      proposers.push_back(std::make_unique<LayoutProposer>(transports.back().get(), endpoints,
                                                           NodeId(static_cast<uint64_t>(p + 1))));
      jitter.push_back(std::make_unique<SeededRandom>(static_cast<uint64_t>(p + 100)));
    }
    for (int p = 0; p < 3; ++p) {
      ProposeOptions o;
      o.max_rounds = 30;
      o.scheduler = &pauses;
      o.random = jitter[p].get();
      proposers[p]->ProposeLayout(
          MakeLayout(1, "tcp" + std::to_string(p)), o,
          [&promises, p](Result<proto::Layout> r) { promises[p].set_value(std::move(r)); });
    }
    std::optional<proto::Layout> decided;
    for (int p = 0; p < 3; ++p) {
      auto future = promises[p].get_future();
      ASSERT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
      Result<proto::Layout> r = future.get();
      ASSERT_TRUE(r.ok()) << "proposer " << p << ": " << r.status().ToString();
      if (!decided) decided = *r;
      EXPECT_TRUE(SameAs(*r, *decided));
    }
    // A majority has it committed; fetch sees it.
    std::promise<Result<proto::Layout>> fetched;
    FetchCommittedLayout(transports[0].get(), endpoints,
                         [&fetched](Result<proto::Layout> r) { fetched.set_value(std::move(r)); });
    Result<proto::Layout> f = fetched.get_future().get();
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_TRUE(SameAs(*f, *decided));
    for (auto& t : transports) t->Shutdown();
  }
  servers.clear();
  server_transport.Shutdown();
  acceptors.clear();
  std::filesystem::remove_all(root);
}

}  // namespace
}  // namespace tally::log
