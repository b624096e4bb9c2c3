#include "workload.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "tally/base/mem_env.h"
#include "workload_run.h"

namespace tally::sim {

namespace {

constexpr int64_t kMs = 1'000'000;

int64_t Between(SeededRandom& r, int64_t lo_ms, int64_t hi_ms) {
  return (lo_ms + static_cast<int64_t>(r.Uniform(static_cast<uint64_t>(hi_ms - lo_ms + 1)))) * kMs;
}

std::string N(int i) { return SimCluster::NodeName(i); }

std::string Ms(int64_t nanos) { return std::to_string(nanos / kMs) + " ms"; }

std::string Way(CutWay w, const std::string& a, const std::string& b) {
  switch (w) {
    case CutWay::kBoth:
      return a + " <-/-> " + b;
    case CutWay::kForward:
      return a + " -/-> " + b + " (one way)";
    case CutWay::kBackward:
      return a + " <-/- " + b + " (one way)";
  }
  return "";
}

}  // namespace

Plan Plan::For(uint64_t seed) {
  Plan p;
  p.seed = seed;
  p.stripes = 1 + static_cast<int>(seed % 2);
  static const double kDrops[] = {0.0, 0.003, 0.02};
  p.drop = kDrops[(seed / 2) % 3];
  p.crashes = static_cast<int>((seed / 6) % 3);
  p.sync_faults = p.crashes > 0 && (seed / 18) % 2 == 1;
  return p;
}

Plan Plan::Reconfiguration(uint64_t seed) {
  Plan p;
  p.seed = seed;
  p.fault = Fault::kCrashForGood;
  p.stripes = 1 + static_cast<int>(seed % 2);
  p.drop = (seed / 2) % 2 == 0 ? 0.0 : 0.003;
  p.victim = static_cast<int>((seed / 4) % 3);
  p.detector = (seed / 12) % 2 == 1;
  return p;
}

Plan Plan::Healing(uint64_t seed) {
  SeededRandom r(seed * 0x9E3779B97F4A7C15ULL + 0x4EA1);
  Plan p;
  p.seed = seed;
  p.fault = Fault::kCrashAndHeal;
  p.stripes = 1 + static_cast<int>(seed % 2);
  p.drop = (seed / 2) % 2 == 0 ? 0.0 : 0.003;
  p.victim = static_cast<int>((seed / 4) % 3);
  p.primary_sequencer = static_cast<int>((seed / 12) % 3);
  p.detector = true;
  p.restart = true;
  p.restart_nanos = Between(r, 50, 1500);
  return p;
}

Plan Plan::Partition(uint64_t seed) {
  static const Fault kKinds[] = {Fault::kIsolateSequencer, Fault::kIsolateUnit,
                                 Fault::kIsolateClient, Fault::kSplitDeciders};
  SeededRandom r(seed * 0x9E3779B97F4A7C15ULL + 0x9A27);
  Plan p;
  p.seed = seed;
  p.fault = kKinds[seed % 4];
  p.stripes = 1 + static_cast<int>((seed / 4) % 2);
  p.drop = (seed / 8) % 2 == 0 ? 0.0 : 0.003;
  p.detector = true;
  const uint64_t variant = seed / 16;
  switch (p.fault) {
    case Fault::kIsolateSequencer:
      // 3 nodes: the sequencer is also the head of every chain and the
      // first decision maker; 5 nodes: node-4 is only the sequencer.
      p.nodes = variant % 2 == 0 ? 3 : 5;
      p.primary_sequencer = p.nodes == 3 ? 0 : 4;
      p.victim = p.primary_sequencer;
      p.fault_nanos = Between(r, 100, 1000);
      break;
    case Fault::kIsolateUnit:
      // The sequencer (node-4) is in no chain; the victim is the head,
      // middle or tail of stripe 0's chain (node-0 is also the first
      // decision maker).
      p.nodes = 5;
      p.primary_sequencer = 4;
      p.victim = static_cast<int>(variant % 3);
      p.fault_nanos = Between(r, 100, 1000);
      break;
    case Fault::kIsolateClient:
      // client-1 loses node-0, the head of stripe 0 (and, with 2 stripes,
      // the tail of stripe 1), but keeps the sequencer on node-2.
      p.primary_sequencer = 2;
      p.victim = 0;
      p.way = static_cast<CutWay>(variant % 3);
      p.fault_nanos = Between(r, 200, 1500);
      break;
    case Fault::kSplitDeciders:
      p.victim = 0;
      p.second = 1;
      p.way = static_cast<CutWay>(variant % 3);
      p.fault_nanos = Between(r, 300, 1500);
      break;
    default:
      break;
  }
  return p;
}

Plan Plan::ReconfigurationFault(uint64_t seed) {
  static const Fault kKinds[] = {Fault::kCrashDecider, Fault::kCrashDuringRemove, Fault::kMinority,
                                 Fault::kRacingRemove};
  SeededRandom r(seed * 0x9E3779B97F4A7C15ULL + 0xC4A5);
  Plan p;
  p.seed = seed;
  p.fault = kKinds[seed % 4];
  p.stripes = 1 + static_cast<int>((seed / 4) % 2);
  p.drop = (seed / 8) % 2 == 0 ? 0.0 : 0.003;
  p.detector = true;
  const uint64_t variant = seed / 16;
  switch (p.fault) {
    case Fault::kCrashDecider:
      // With 3 nodes the second crash takes the majority: the cluster must
      // refuse cleanly until the decision maker comes back. With 5, the
      // other three carry on.
      p.nodes = variant % 2 == 0 ? 3 : 5;
      p.victim = static_cast<int>(r.Uniform(static_cast<uint64_t>(p.nodes)));
      p.second = p.victim == 0 ? 1 : 0;  // the lowest live id decides
      p.fault_nanos = Between(r, 0, 12);
      p.restart = p.nodes == 3;
      p.restart_nanos = Between(r, 200, 800);
      break;
    case Fault::kCrashDuringRemove:
      p.detector = false;
      p.victim = static_cast<int>(r.Uniform(3));
      p.second = (p.victim + 1 + static_cast<int>(r.Uniform(2))) % 3;
      p.fault_nanos = Between(r, 0, 15);
      p.restart = true;
      p.restart_nanos = Between(r, 50, 4000);
      p.sync_faults = variant % 2 == 1;
      break;
    case Fault::kMinority:
      p.nodes = 5;
      p.victim = static_cast<int>(r.Uniform(5));
      p.second = (p.victim + 1 + static_cast<int>(r.Uniform(4))) % 5;
      p.fault_nanos = Between(r, 0, 400);
      break;
    case Fault::kRacingRemove:
      // Around the detectors' own change (a crashed node is silent: they
      // commit about 600 ms after the crash).
      p.victim = static_cast<int>(r.Uniform(3));
      p.fault_nanos = Between(r, 500, 900);
      break;
    default:
      break;
  }
  return p;
}

std::string Plan::ToString() const {
  std::string s = std::to_string(nodes) + " nodes, stripes " + std::to_string(stripes) + ", drop " +
                  std::to_string(drop) + ", ";
  const std::string v = N(victim);
  switch (fault) {
    case Fault::kRestarts:
      return "stripes " + std::to_string(stripes) + ", drop " + std::to_string(drop) +
             ", crashes " + std::to_string(crashes) + (sync_faults ? ", sync faults" : "");
    case Fault::kCrashForGood:
      return "stripes " + std::to_string(stripes) + ", drop " + std::to_string(drop) + ", " + v +
             " crashes and is reconfigured out by " +
             (detector ? "the failure detector" : "the nemesis");
    case Fault::kIsolateSequencer:
      return s + "the primary sequencer " + v + " is isolated for " + Ms(fault_nanos);
    case Fault::kIsolateUnit:
      return s + "log unit " + v + " (" +
             (victim == 0   ? "head"
              : victim == 1 ? "middle"
                            : "tail") +
             " of stripe 0) is isolated for " + Ms(fault_nanos);
    case Fault::kIsolateClient:
      return s + "cut " + Way(way, "client-1", v + " (chain head)") + " for " + Ms(fault_nanos);
    case Fault::kSplitDeciders:
      return s + "cut " + Way(way, v, N(second)) + " for " + Ms(fault_nanos) +
             ": two decision makers";
    case Fault::kCrashDecider:
      return s + v + " crashes; the decision maker " + N(second) + " crashes " + Ms(fault_nanos) +
             " after the first seal" +
             (restart ? " and restarts " + Ms(restart_nanos) + " later" : "");
    case Fault::kCrashDuringRemove:
      return s + v + " crashes; the nemesis removes it and " + N(second) + " crashes " +
             Ms(fault_nanos) + " into that" + (sync_faults ? " after a failed sync" : "") +
             ", restarting " + Ms(restart_nanos) + " later";
    case Fault::kMinority:
      return s + v + " and, " + Ms(fault_nanos) + " later, " + N(second) +
             " crash for good (2 of 5 layout servers)";
    case Fault::kCrashAndHeal:
      return s + "primary sequencer " + N(primary_sequencer) + ", " + v +
             " crashes, is taken out, restarts " + Ms(restart_nanos) +
             " later and is healed back by the detectors";
    case Fault::kRacingRemove:
      return s + v + " crashes; the nemesis proposes its own layout without it " + Ms(fault_nanos) +
             " later, racing the detectors";
  }
  return s;
}

void Outcome::Add(const Outcome& o) {
  acked += o.acked;
  append_failures += o.append_failures;
  reads += o.reads;
  holes += o.holes;
  holes_filled += o.holes_filled;
  chains_completed += o.chains_completed;
  lost_races += o.lost_races;
  layout_refreshes += o.layout_refreshes;
  final_epoch += o.final_epoch;
  cut_messages += o.cut_messages;
  epoch_observations += o.epoch_observations;
}

Outcome RunPlan(const Plan& plan) { return ClientRun(plan).Run(); }

std::vector<std::string> RunTwice(const Plan& plan, Outcome& first) {
  std::vector<std::string> problems;
  first = RunPlan(plan);
  if (!first.violations.empty()) {
    std::string list;
    for (size_t i = 0; i < first.violations.size() && i < 8; ++i) {
      list += "\n  " + first.violations[i];
    }
    problems.push_back(std::to_string(first.violations.size()) + " violations; the first " +
                       std::to_string(std::min<size_t>(8, first.violations.size())) + ":" + list);
  }
  if (first.acked == 0) problems.push_back("no append succeeded");
  // The same seed replays the same run, event for event.
  const Outcome second = RunPlan(plan);
  if (first.trace != second.trace) {
    problems.push_back("the replay's trace differs: " + std::to_string(first.trace) + " vs " +
                       std::to_string(second.trace));
  } else if (!(first == second)) {
    problems.push_back("same seed, different outcome");
  }
  return problems;
}

std::vector<uint64_t> Seeds(uint64_t default_count) {
  if (const char* env = std::getenv("TALLY_SIM_SEED"); env != nullptr && *env != '\0') {
    return {std::strtoull(env, nullptr, 10)};
  }
  uint64_t n = default_count;
  if (const char* env = std::getenv("TALLY_SIM_SEEDS"); env != nullptr && *env != '\0') {
    n = std::strtoull(env, nullptr, 10);
  }
  std::vector<uint64_t> seeds;
  for (uint64_t s = 1; s <= n; ++s) seeds.push_back(s);
  return seeds;
}

std::string ReplayHint(const Plan& plan, const std::string& binary) {
  return "seed " + std::to_string(plan.seed) + " [" + plan.ToString() +
         "] (replay: TALLY_SIM_SEED=" + std::to_string(plan.seed) + " tests/" + binary + ")";
}

}  // namespace tally::sim
