// The deterministic cluster harness with real clients (docs/simulation.md):
// per seed, 3 tally-server nodes (log units; node 0 also the sequencer) and
// 3 client::Clients run on one thread's worth of cooperative threads, on
// virtual time, over an InProcessNetwork with seeded delays, reordering and
// drops; a nemesis crashes nodes (power cut: unsynced data dropped), fails
// their syncs and restarts them, or crashes one for good and reconfigures
// it out. Writers append (some to streams), readers read random addresses
// below the tail (hole filling and chain completion race the writers), then
// a checker reads every address and every replica (workload.h). History
// holds the invariants; each seed runs twice and must replay the identical
// trace. Partitions and crashes around reconfiguration: sim_faults_test.cc.
//
// Replay one seed: TALLY_SIM_SEED=N tests/sim_client_test  (add
// TALLY_SIM_VERBOSE=1 for the servers' logs).

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <vector>

#include "workload.h"

namespace tally::sim {
namespace {

constexpr uint64_t kDefaultSeeds = 200;
constexpr uint64_t kReconfigurationSeeds = 100;
constexpr size_t kAllAppends = 3 * 2 * 10;  // clients x writers x appends

// Runs `plan` twice (RunTwice), reporting its problems as test failures;
// adds the first run to `total` and its trace to `traces`.
Outcome RunAndReplay(const Plan& plan, Outcome& total, std::set<uint64_t>& traces) {
  Outcome first;
  for (const auto& problem : RunTwice(plan, first)) ADD_FAILURE() << problem;
  traces.insert(first.trace);
  total.Add(first);
  return first;
}

TEST(SimClientTest, InvariantsHoldUnderFaultsAndEachSeedReplaysExactly) {
  if (std::getenv("TALLY_SIM_VERBOSE") == nullptr) spdlog::set_level(spdlog::level::off);
  std::set<uint64_t> traces;
  Outcome total;
  const std::vector<uint64_t> seeds = Seeds(kDefaultSeeds);
  for (uint64_t seed : seeds) {
    const Plan plan = Plan::For(seed);
    SCOPED_TRACE(ReplayHint(plan, "sim_client_test"));
    const Outcome first = RunAndReplay(plan, total, traces);
    if (plan.faultless()) {
      EXPECT_EQ(first.append_failures, 0u);
      EXPECT_EQ(first.acked, kAllAppends);
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
  const std::vector<uint64_t> seeds = Seeds(kReconfigurationSeeds);
  std::vector<int64_t> detections;
  for (uint64_t seed : seeds) {
    const Plan plan = Plan::Reconfiguration(seed);
    SCOPED_TRACE(ReplayHint(plan, "sim_client_test"));
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
