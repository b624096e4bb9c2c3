// Partitions and crashes around reconfiguration, in the deterministic
// whole-cluster simulation (docs/simulation.md, "Partitions and crashes
// around reconfiguration"): the workload of sim_client_test with every node
// a layout server and a failure detector, and per seed one of
//  - partitions: the primary sequencer's node isolated, a log unit (head,
//    middle or tail) isolated, a client cut from the chain head (both ways
//    or one), or two nodes cut from each other so both believe they decide;
//  - crashes around reconfiguration: the decision maker crashing mid-way,
//    a node crashing during the operator's reconfiguration, 2 of 5 layout
//    servers crashing, the nemesis's own layout racing the detectors'.
// Beyond the invariants of every run (history.h), the cluster must converge
// after the faults (crashed nodes out of the layout, the layout settled,
// an append accepted), epochs only grow, and every epoch run was agreed.
//
// Replay one seed: TALLY_SIM_SEED=N tests/sim_faults_test  (add
// TALLY_SIM_VERBOSE=1 for the servers' logs; TALLY_SIM_SEEDS=N runs 1..N,
// TALLY_SIM_KEEP_GOING=1 past failing seeds).

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "workload.h"

namespace tally::sim {
namespace {

constexpr uint64_t kPartitionSeeds = 40;
constexpr uint64_t kReconfigurationFaultSeeds = 32;
constexpr uint64_t kHealingSeeds = 16;

const char* KindName(Fault f) {
  switch (f) {
    case Fault::kIsolateSequencer:
      return "isolated sequencer";
    case Fault::kIsolateUnit:
      return "isolated log unit";
    case Fault::kIsolateClient:
      return "client cut from the head";
    case Fault::kSplitDeciders:
      return "two decision makers";
    case Fault::kCrashDecider:
      return "decision maker crashes";
    case Fault::kCrashDuringRemove:
      return "crash during the operator's change";
    case Fault::kMinority:
      return "2 of 5 layout servers crash";
    case Fault::kRacingRemove:
      return "nemesis races the detectors";
    case Fault::kCrashAndHeal:
      return "crash, restart, healed back";
    default:
      return "other";
  }
}

struct Tally {
  int seeds = 0;
  int reconfigured = 0;  // ended in a later epoch
  int mid_reconfiguration = 0;
  int nemesis_won = 0;
  int stream_checks_skipped = 0;
  Outcome total;
};

// Runs every seed of `plan_for` twice; stops at the first failing seed,
// which the failure names with its replay command.
// `regressions`: seeds that once failed, run beyond the default ones
// (unless TALLY_SIM_SEED picks one seed).
void RunSeeds(uint64_t default_seeds, Plan (*plan_for)(uint64_t),
              const std::function<void(const Plan&, const Outcome&)>& expect,
              std::initializer_list<uint64_t> regressions = {}) {
  if (std::getenv("TALLY_SIM_VERBOSE") == nullptr) spdlog::set_level(spdlog::level::off);
  std::map<Fault, Tally> tallies;
  std::set<uint64_t> traces;
  std::vector<uint64_t> seeds = Seeds(default_seeds);
  const char* one = std::getenv("TALLY_SIM_SEED");
  for (uint64_t r : regressions) {
    if ((one == nullptr || *one == '\0') &&
        std::find(seeds.begin(), seeds.end(), r) == seeds.end()) {
      seeds.push_back(r);
    }
  }
  const bool keep_going = std::getenv("TALLY_SIM_KEEP_GOING") != nullptr;
  for (uint64_t seed : seeds) {
    const Plan plan = plan_for(seed);
    SCOPED_TRACE(ReplayHint(plan, "sim_faults_test"));
    Outcome first;
    for (const auto& problem : RunTwice(plan, first)) ADD_FAILURE() << problem;
    expect(plan, first);
    traces.insert(first.trace);
    Tally& t = tallies[plan.fault];
    ++t.seeds;
    t.reconfigured += first.final_epoch > 0 ? 1 : 0;
    t.mid_reconfiguration += first.hit_mid_reconfiguration ? 1 : 0;
    t.nemesis_won += first.nemesis_won ? 1 : 0;
    t.stream_checks_skipped += first.stream_check_skipped ? 1 : 0;
    t.total.Add(first);
    // One replayable seed is enough to report (TALLY_SIM_KEEP_GOING=1 runs
    // every seed and reports each failing one).
    if (::testing::Test::HasFailure() && !keep_going) break;
  }
  if (!::testing::Test::HasFailure()) {
    EXPECT_GE(traces.size(), seeds.size() * 95 / 100);
  }
  for (const auto& [fault, t] : tallies) {
    std::printf(
        "%-36s %3d seeds: %5zu appends acknowledged, %3zu failed cleanly; %d ended in a later "
        "epoch (%llu epochs in all), %llu messages cut (partitions, crashes), %zu epoch changes "
        "observed",
        KindName(fault), t.seeds, t.total.acked, t.total.append_failures, t.reconfigured,
        static_cast<unsigned long long>(t.total.final_epoch),
        static_cast<unsigned long long>(t.total.cut_messages), t.total.epoch_observations);
    if (fault == Fault::kCrashDecider || fault == Fault::kCrashDuringRemove) {
      std::printf("; %d crashes before the commit", t.mid_reconfiguration);
    }
    if (fault == Fault::kRacingRemove) std::printf("; the nemesis's layout won %d", t.nemesis_won);
    if (t.stream_checks_skipped > 0) {
      std::printf("; stream check skipped %d (primary restarted in place)",
                  t.stream_checks_skipped);
    }
    std::printf("\n");
  }
}

// Partitions, each healed after a while: the failure detectors remove an
// isolated node (or not, if it comes back first); a client cut from the
// chain head changes nothing in the layout. Nothing acknowledged is lost,
// Paxos leaves one layout per epoch, and the log takes appends afterwards.
TEST(SimFaultsTest, PartitionsKeepEveryAcknowledgedAppend) {
  RunSeeds(kPartitionSeeds, &Plan::Partition, [](const Plan& plan, const Outcome& o) {
    if (plan.fault == Fault::kIsolateClient) {
      EXPECT_EQ(o.final_epoch, 0u) << "a client's partition changed the layout";
    }
  });
}

// Crashes while the layout changes: the cluster converges to a layout
// without the dead nodes (after refusing cleanly while a majority is
// gone), every acknowledged append survives, epochs only grow.
TEST(SimFaultsTest, CrashesAroundReconfigurationKeepEveryAcknowledgedAppend) {
  RunSeeds(kReconfigurationFaultSeeds, &Plan::ReconfigurationFault,
           [](const Plan&, const Outcome& o) {
             EXPECT_GE(o.final_epoch, 1u) << "the crash was never reconfigured away";
           });
}

// Healing: a node crashes under load (a power cut), the detectors take it
// out, it restarts on its disk, and the detectors bring it back by state
// transfer (wiping it first when it holds an entry the chains never
// acknowledged) with no operator. It must end in every chain again; every
// acknowledged append survives and is on every replica of its chain,
// the healed node included.
TEST(SimFaultsTest, ARestartedNodeIsHealedBackWithoutAnOperator) {
  int64_t max_heal = 0;
  // Seed 118: a message of the delta copy after the seal was lost, and the
  // copy's 5 s RPC timeout kept every unit sealed (no writes) past the run.
  RunSeeds(kHealingSeeds, &Plan::Healing,
           [&](const Plan&, const Outcome& o) {
             EXPECT_GE(o.final_epoch, 2u) << "expected one epoch out and one back";
             max_heal = std::max(max_heal, o.healed_after_nanos);
           },
           {118});
  std::printf("healed back at most %lld ms (virtual) after the restart\n",
              static_cast<long long>(max_heal / 1'000'000));
}

}  // namespace
}  // namespace tally::sim
