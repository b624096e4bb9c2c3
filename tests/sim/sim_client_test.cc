// The deterministic cluster harness with real clients (docs/simulation.md):
// per seed, 3 tally-server nodes (log units; node 0 also the sequencer) and
// 3 client::Clients run on one thread's worth of cooperative threads, on
// virtual time, over an InProcessNetwork with seeded delays, reordering and
// drops; a nemesis crashes nodes (power cut: unsynced data dropped), fails
// their syncs and restarts them. Writers append (some to streams), readers
// read random addresses below the tail (hole filling and chain completion
// race the writers), then a checker reads every address and every replica.
// History::Check holds the invariants; each seed runs twice and must replay
// the identical trace.
//
// Replay one seed: TALLY_SIM_SEED=N tests/sim_client_test  (add
// TALLY_SIM_VERBOSE=1 for the servers' logs).

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "history.h"
#include "sim_cluster.h"
#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"

namespace tally::sim {
namespace {

constexpr uint64_t kDefaultSeeds = 200;
constexpr uint64_t kReconfigurationSeeds = 100;
constexpr uint64_t kMaxEvents = 3'000'000;
constexpr int kClients = 3;
constexpr int kWritersPerClient = 2;
constexpr int kAppendsPerWriter = 10;
const std::vector<std::string> kStreams = {"switches", "ports"};

// What one seed does, drawn from the seed alone.
struct Plan {
  uint64_t seed = 0;
  int stripes = 1;
  double drop = 0;
  int crashes = 0;  // node crashes with restart
  bool sync_faults = false;
  // One node crashes for good and is reconfigured out (a new epoch, sealed,
  // agreed by the layout servers); node 0 is the primary sequencer.
  bool reconfigure = false;
  int victim = 0;
  // The nodes' failure detectors find the crash and reconfigure on their
  // own (else the nemesis calls RemoveNode, as an operator would).
  bool detector = false;

  static Plan Reconfiguration(uint64_t seed) {
    Plan p;
    p.seed = seed;
    p.stripes = 1 + static_cast<int>(seed % 2);
    p.drop = (seed / 2) % 2 == 0 ? 0.0 : 0.003;
    p.reconfigure = true;
    p.victim = static_cast<int>((seed / 4) % 3);
    p.detector = (seed / 12) % 2 == 1;
    return p;
  }

  static Plan For(uint64_t seed) {
    Plan p;
    p.seed = seed;
    p.stripes = 1 + static_cast<int>(seed % 2);
    static const double kDrops[] = {0.0, 0.003, 0.02};
    p.drop = kDrops[(seed / 2) % 3];
    p.crashes = static_cast<int>((seed / 6) % 3);
    p.sync_faults = p.crashes > 0 && (seed / 18) % 2 == 1;
    return p;
  }
  bool faultless() const { return drop == 0 && crashes == 0; }
  std::string ToString() const {
    if (reconfigure) {
      return "stripes " + std::to_string(stripes) + ", drop " + std::to_string(drop) + ", node-" +
             std::to_string(victim) + " crashes and is reconfigured out by " +
             (detector ? "the failure detector" : "the nemesis");
    }
    return "stripes " + std::to_string(stripes) + ", drop " + std::to_string(drop) + ", crashes " +
           std::to_string(crashes) + (sync_faults ? ", sync faults" : "");
  }
};

struct Outcome {
  uint64_t trace = 0;
  uint64_t events = 0;
  int64_t end_nanos = 0;
  size_t acked = 0;
  size_t append_failures = 0;
  size_t reads = 0;
  size_t holes = 0;
  uint64_t final_tail = 0;
  uint64_t holes_filled = 0;
  uint64_t chains_completed = 0;
  uint64_t lost_races = 0;
  uint64_t layout_refreshes = 0;
  int64_t detected_after_nanos = 0;  // crash -> new layout, by the detectors
  std::vector<std::string> violations;

  bool operator==(const Outcome&) const = default;
};

class ClientRun {
 public:
  explicit ClientRun(Plan plan)
      : plan_(plan),
        cluster_(SimClusterOptions{.seed = plan.seed,
                                   .nodes = 3,
                                   .stripes = plan.stripes,
                                   .links = {.min_delay_nanos = 50'000,
                                             .max_delay_nanos = 2'000'000,
                                             .drop_probability = plan.drop},
                                   .layout_servers = plan.reconfigure,
                                   .failure_detector = plan.detector}) {}

  Outcome Run() {
    if (plan_.sync_faults) history_.AllowIoErrors();
    Status st = cluster_.StartAll();
    if (!st.ok()) return Fail("start: " + st.ToString());
    for (int c = 0; c < kClients; ++c) {
      auto client = cluster_.NewClient("client-" + std::to_string(c));
      if (!client.ok()) return Fail("client: " + client.status().ToString());
      clients_.push_back(std::move(*client));
    }
    std::vector<std::unique_ptr<ThreadHandle>> workers;
    for (int c = 0; c < kClients; ++c) {
      for (int w = 0; w < kWritersPerClient; ++w) {
        workers.push_back(
            cluster_.threads().Start("writer-" + std::to_string(c) + "." + std::to_string(w),
                                     [this, c, w] { Writer(c, w); }));
      }
      workers.push_back(
          cluster_.threads().Start("reader-" + std::to_string(c), [this, c] { Reader(c); }));
    }
    workers.push_back(cluster_.threads().Start("nemesis", [this] { Nemesis(); }));
    const size_t workload = workers.size();
    if (!PumpUntil([&] { return finished_ == workload; })) {
      return Fail("workload did not finish; blocked: " + cluster_.threads().LiveNames());
    }
    for (auto& h : workers) h->Join();

    workers.clear();
    workers.push_back(cluster_.threads().Start("checker", [this] { Checker(); }));
    if (!PumpUntil([&] { return finished_ == workload + 1; })) {
      return Fail("checker did not finish; blocked: " + cluster_.threads().LiveNames());
    }
    workers.front()->Join();

    for (const auto& c : clients_) {
      client::ClientStats s = c->stats();
      out_.holes_filled += s.holes_filled;
      out_.chains_completed += s.chains_completed;
      out_.lost_races += s.lost_races;
      out_.layout_refreshes += s.layout_refreshes;
    }
    clients_.clear();
    for (auto& v : history_.Check(out_.final_tail)) out_.violations.push_back(v);
    out_.acked = history_.acked();
    out_.append_failures = history_.append_failures();
    out_.reads = history_.reads();
    out_.holes = history_.holes();
    out_.end_nanos = cluster_.scheduler().now();
    out_.trace = cluster_.trace().hash();
    out_.events = cluster_.trace().events();
    return out_;
  }

 private:
  Outcome Fail(std::string why) {
    out_.violations.push_back(std::move(why));
    out_.trace = cluster_.trace().hash();
    return out_;
  }

  // Runs the scheduler until `done` holds; false if it went idle (or hit
  // the event budget) first.
  bool PumpUntil(const std::function<bool()>& done) {
    for (uint64_t n = 0; n < kMaxEvents; ++n) {
      if (done()) return true;
      if (!cluster_.scheduler().RunNext()) return done();
    }
    return done();
  }

  uint64_t Draw(uint64_t n) { return cluster_.random().Uniform(n); }
  void Pause(int64_t max_nanos) {
    cluster_.threads().SleepNanos(static_cast<int64_t>(Draw(static_cast<uint64_t>(max_nanos))));
  }

  void Writer(int c, int w) {
    client::Client& client = *clients_[c];
    for (int k = 0; k < kAppendsPerWriter; ++k) {
      const std::string payload = "c" + std::to_string(c) + "w" + std::to_string(w) + "k" +
                                  std::to_string(k) + "s" + std::to_string(plan_.seed);
      std::vector<StreamId> streams;
      std::vector<std::string> names;
      for (const auto& name : kStreams) {
        if (Draw(2) == 0) {
          streams.push_back(StreamId::FromName(name));
          names.push_back(name);
        }
      }
      auto r = client.Append(payload, streams);
      if (r.ok()) {
        history_.Acked(payload, r->value());
        for (const auto& name : names) stream_acks_[name].insert(r->value());
      } else {
        history_.AppendFailed(payload, r.status());
      }
      Pause(3'000'000);
    }
    ++writers_done_;
    ++finished_;
  }

  void Reader(int c) {
    client::Client& client = *clients_[c];
    const std::string who = "reader-" + std::to_string(c);
    for (int i = 0; writers_done_ < kClients * kWritersPerClient; ++i) {
      Pause(4'000'000);
      auto tail = client.Tail();
      if (!tail.ok()) {
        history_.ReadFailed(who, 0, tail.status());
        continue;
      }
      if (tail->value() == 0) continue;
      // Read near the tail, where writers are still at work.
      const uint64_t span = std::min<uint64_t>(tail->value(), 12);
      const uint64_t a = tail->value() - 1 - Draw(span);
      if (i % 4 == 3) {
        auto range = client.ReadRange(Address(a), Address(a + 4));
        if (!range.ok()) {
          history_.ReadFailed(who, a, range.status());
          continue;
        }
        for (const auto& e : *range) history_.Read(who, e.address(), e);
        continue;
      }
      auto r = client.Read(Address(a));
      if (r.ok()) {
        history_.Read(who, a, *r);
      } else {
        history_.ReadFailed(who, a, r.status());
      }
    }
    ++finished_;
  }

  void Nemesis() {
    if (plan_.reconfigure) {
      Pause(80'000'000);
      if (plan_.victim == 0) sequencer_restarted_ = true;
      // One client stalls around the change: its tokens of the old epoch
      // reach the log units late, after the seal (or, without one, after
      // the new sequencer has rebuilt itself).
      cluster_.SetSlowSender("client-1", 300'000'000);
      crash_at_ = cluster_.scheduler().now();
      cluster_.CrashNode(plan_.victim);
      Result<proto::Layout> next =
          Status(Code::kTimeout, "no failure detector reconfigured within 3 s");
      if (plan_.detector) {
        // Wait for the detectors (at most 3 s of virtual time).
        for (int k = 0; k < 300 && cluster_.layout().epoch() == 0; ++k) {
          cluster_.threads().SleepNanos(10'000'000);
          (void)cluster_.RefreshLayout();
        }
        if (cluster_.layout().epoch() > 0) {
          next = cluster_.layout();
          out_.detected_after_nanos = cluster_.scheduler().now() - crash_at_;
        }
      } else {
        // The failure detector's delay, then the decision maker's change.
        Pause(100'000'000);
        next = cluster_.RemoveNode(plan_.victim);
      }
      Pause(200'000'000);
      cluster_.SetSlowSender("", 0);
      if (!next.ok()) {
        out_.violations.push_back("reconfiguration: " + next.status().ToString());
      } else if (next->epoch() != 1) {
        out_.violations.push_back("reconfiguration committed epoch " +
                                  std::to_string(next->epoch()) + ", expected 1");
      }
      ++finished_;
      return;
    }
    for (int k = 0; k < plan_.crashes; ++k) {
      Pause(60'000'000);
      const int victim = static_cast<int>(Draw(static_cast<uint64_t>(cluster_.size())));
      if (plan_.sync_faults && Draw(2) == 0) {
        cluster_.FailSyncs(victim, 1);
        Pause(5'000'000);
      }
      if (victim == 0) sequencer_restarted_ = true;
      cluster_.CrashNode(victim);
      Pause(300'000'000);
      Status st = cluster_.StartNode(victim);
      if (!st.ok()) out_.violations.push_back("restart: " + st.ToString());
    }
    ++finished_;
  }

  // After the faults: every address below the tail is read (settling holes
  // and half-written chains), then every replica of its chain is inspected,
  // and the streams' maps are compared with what was acknowledged.
  void Checker() {
    cluster_.SetDropProbability(0);
    auto checker = cluster_.NewClient("checker");
    if (!checker.ok()) {
      out_.violations.push_back("checker client: " + checker.status().ToString());
      ++finished_;
      return;
    }
    client::Client& client = **checker;
    auto tail = client.Tail();
    if (!tail.ok()) {
      out_.violations.push_back("final tail: " + tail.status().ToString());
      ++finished_;
      return;
    }
    out_.final_tail = tail->value();
    for (uint64_t a = 0; a < out_.final_tail; ++a) {
      auto r = client.Read(Address(a));
      if (r.ok()) {
        history_.Read("checker", a, *r);
      } else {
        out_.violations.push_back("final read of address " + std::to_string(a) +
                                  " failed with no faults left: " + r.status().ToString());
      }
    }
    auto transport = cluster_.NewTransport("inspector");
    std::map<std::string, std::shared_ptr<net::Channel>> channels;
    for (uint64_t a = 0; a < out_.final_tail; ++a) {
      for (const auto& unit : cluster_.ChainOf(a)) {
        auto& ch = channels[unit];
        if (ch == nullptr) ch = transport->Connect(unit);
        proto::ReadRequest req;
        req.set_epoch(cluster_.layout().epoch());
        req.set_address(a);
        auto r = WaitForValue<Result<proto::ReadResponse>>(
            cluster_.threads(), [&](std::function<void(Result<proto::ReadResponse>)> done) {
              net::CallTyped<proto::ReadResponse>(*ch, "log.read", req, net::CallOptions{},
                                                  std::move(done));
            });
        if (r.ok()) {
          history_.Replica(unit, a, r->entry());
        } else {
          history_.ReplicaMissing(unit, a, r.status());
        }
      }
    }
    for (const auto& name : kStreams) {
      auto in_map = client.StreamAddresses(StreamId::FromName(name), Address(0));
      if (!in_map.ok()) {
        out_.violations.push_back("stream map of " + name + ": " + in_map.status().ToString());
        continue;
      }
      std::set<uint64_t> listed;
      for (Address a : *in_map) listed.insert(a.value());
      // A sequencer restarted in the same epoch cannot learn the streams of
      // appends whose tokens its previous incarnation issued and that land
      // after its bootstrap (docs/simulation.md, "Known limits"); epoch
      // changes on sequencer failover (issue 4) close that gap.
      if (sequencer_restarted_ && !plan_.reconfigure) continue;
      for (uint64_t a : stream_acks_[name]) {
        if (listed.count(a) == 0) {
          out_.violations.push_back("stream " + name + " lost acknowledged address " +
                                    std::to_string(a) + " from its map");
        }
      }
    }
    channels.clear();
    if (plan_.reconfigure) {
      for (auto& v : cluster_.CheckCommittedLayouts()) out_.violations.push_back(v);
      if (cluster_.layout().epoch() < 1) {
        out_.violations.push_back("the crash was never reconfigured away (still epoch 0)");
      }
    }
    ++finished_;
  }

  const Plan plan_;
  SimCluster cluster_;
  History history_;
  Outcome out_;
  std::vector<std::unique_ptr<client::Client>> clients_;
  std::map<std::string, std::set<uint64_t>> stream_acks_;
  bool sequencer_restarted_ = false;
  int64_t crash_at_ = 0;
  int writers_done_ = 0;
  size_t finished_ = 0;
};

std::vector<uint64_t> Seeds() {
  if (const char* env = std::getenv("TALLY_SIM_SEED"); env != nullptr && *env != '\0') {
    return {std::strtoull(env, nullptr, 10)};
  }
  uint64_t n = kDefaultSeeds;
  if (const char* env = std::getenv("TALLY_SIM_SEEDS"); env != nullptr && *env != '\0') {
    n = std::strtoull(env, nullptr, 10);
  }
  std::vector<uint64_t> seeds;
  for (uint64_t s = 1; s <= n; ++s) seeds.push_back(s);
  return seeds;
}

std::string ReplayHint(const Plan& plan) {
  return "seed " + std::to_string(plan.seed) + " [" + plan.ToString() +
         "] (replay: TALLY_SIM_SEED=" + std::to_string(plan.seed) + " tests/sim_client_test)";
}

// Runs `plan` twice and checks what every seed must satisfy: no violation,
// some progress, and an identical replay. Adds the first run to `total` and
// its trace to `traces`; returns it.
Outcome RunAndReplay(const Plan& plan, Outcome& total, std::set<uint64_t>& traces) {
  Outcome first = ClientRun(plan).Run();
  EXPECT_TRUE(first.violations.empty())
      << first.violations.size() << " violations; first: " << first.violations.front();
  EXPECT_GT(first.acked, 0u) << "no append succeeded";
  // The same seed replays the same run, event for event.
  Outcome second = ClientRun(plan).Run();
  EXPECT_EQ(first.trace, second.trace);
  EXPECT_TRUE(first == second) << "same seed, different outcome";
  traces.insert(first.trace);
  total.acked += first.acked;
  total.append_failures += first.append_failures;
  total.reads += first.reads;
  total.holes += first.holes;
  total.holes_filled += first.holes_filled;
  total.chains_completed += first.chains_completed;
  total.lost_races += first.lost_races;
  total.layout_refreshes += first.layout_refreshes;
  return first;
}

TEST(SimClientTest, InvariantsHoldUnderFaultsAndEachSeedReplaysExactly) {
  if (std::getenv("TALLY_SIM_VERBOSE") == nullptr) spdlog::set_level(spdlog::level::off);
  std::set<uint64_t> traces;
  Outcome total;
  const std::vector<uint64_t> seeds = Seeds();
  for (uint64_t seed : seeds) {
    const Plan plan = Plan::For(seed);
    SCOPED_TRACE(ReplayHint(plan));
    const Outcome first = RunAndReplay(plan, total, traces);
    if (plan.faultless()) {
      EXPECT_EQ(first.append_failures, 0u);
      EXPECT_EQ(first.acked, static_cast<size_t>(kClients * kWritersPerClient * kAppendsPerWriter));
    }
    if (HasFailure()) break;  // one replayable seed is enough to report
  }
  EXPECT_GE(traces.size(), seeds.size() * 95 / 100);
  std::printf(
      "%zu seeds: %zu appends acknowledged, %zu failed cleanly, %zu reads, %zu holes; clients "
      "filled %llu holes, completed %llu chains, lost %llu token races\n",
      seeds.size(), total.acked, total.append_failures, total.reads, total.holes,
      static_cast<unsigned long long>(total.holes_filled),
      static_cast<unsigned long long>(total.chains_completed),
      static_cast<unsigned long long>(total.lost_races));
}

// Reconfiguration under load: a node (sometimes the primary sequencer)
// crashes for good and is reconfigured out in epoch 1 while clients write
// and read. Writes in flight across the seal either complete or fail
// clearly; none is lost or doubled; the new sequencer, rebuilt from the
// sealed units, keeps every acknowledged stream membership.
TEST(SimClientTest, ReconfigurationKeepsEveryAcknowledgedAppend) {
  if (std::getenv("TALLY_SIM_VERBOSE") == nullptr) spdlog::set_level(spdlog::level::off);
  std::set<uint64_t> traces;
  Outcome total;
  std::vector<uint64_t> seeds = Seeds();
  if (std::getenv("TALLY_SIM_SEED") == nullptr && std::getenv("TALLY_SIM_SEEDS") == nullptr) {
    seeds.resize(kReconfigurationSeeds);
  }
  std::vector<int64_t> detections;
  for (uint64_t seed : seeds) {
    const Plan plan = Plan::Reconfiguration(seed);
    SCOPED_TRACE(ReplayHint(plan));
    const Outcome first = RunAndReplay(plan, total, traces);
    if (plan.detector) {
      detections.push_back(first.detected_after_nanos);
      EXPECT_GT(first.detected_after_nanos, 0) << "the detectors never reconfigured";
    }
    if (HasFailure()) break;
  }
  EXPECT_GE(traces.size(), seeds.size() * 95 / 100);
  std::printf(
      "%zu reconfiguration seeds: %zu appends acknowledged, %zu failed cleanly; clients adopted "
      "%llu newer layouts, completed %llu chains\n",
      seeds.size(), total.acked, total.append_failures,
      static_cast<unsigned long long>(total.layout_refreshes),
      static_cast<unsigned long long>(total.chains_completed));
  if (!detections.empty()) {
    std::sort(detections.begin(), detections.end());
    std::printf(
        "failure detector: crash to committed new layout (virtual time) median %lld ms, "
        "max %lld ms over %zu seeds\n",
        static_cast<long long>(detections[detections.size() / 2] / 1'000'000),
        static_cast<long long>(detections.back() / 1'000'000), detections.size());
  }
}

}  // namespace
}  // namespace tally::sim
