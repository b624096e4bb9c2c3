#pragma once

// One simulated run with real clients (docs/simulation.md): what a seed
// does (Plan: cluster shape and faults, drawn from the seed alone), the run
// itself (writers, readers, a nemesis injecting the plan's faults, an epoch
// monitor, then a checker) and what came out (Outcome: counts, the trace
// hash, and every invariant violation found).

#include <cstdint>
#include <string>
#include <vector>

namespace tally::sim {

// The fault a seed injects.
enum class Fault {
  kRestarts,           // 0-2 node crashes with restart in place; static layout
  kCrashForGood,       // a node crashes for good and is reconfigured out
  kIsolateSequencer,   // the primary sequencer's node is cut off from all, then healed
  kIsolateUnit,        // a log unit (head, middle or tail) is cut off, then healed
  kIsolateClient,      // a client is cut from the chain head (only), then healed
  kSplitDeciders,      // node-0 and node-1 lose each other: two decision makers
  kCrashDecider,       // a crash, then the decision maker crashes mid-reconfiguration
  kCrashDuringRemove,  // a node crashes while the nemesis (an operator) reconfigures
  kMinority,           // 2 of 5 layout servers crash for good, one after the other
  kRacingRemove,       // the nemesis and a failure detector reconfigure at once
  kCrashAndHeal,       // a node crashes, is reconfigured out, restarts and is healed back
};

// Which way a cut between two sides goes.
enum class CutWay {
  kBoth,
  kForward,  // only from the first side to the second (its requests are lost)
  kBackward  // only from the second to the first (answers to the first are lost)
};

struct Plan {
  uint64_t seed = 0;
  Fault fault = Fault::kRestarts;
  int nodes = 3;
  int stripes = 1;
  int primary_sequencer = 0;
  double drop = 0;
  // kRestarts: crashes with restart, some after an injected sync failure.
  int crashes = 0;
  bool sync_faults = false;
  // The node crashed, isolated or cut (the chain head, for kIsolateClient).
  int victim = 0;
  // A second node: kCrashDecider's decision maker, kCrashDuringRemove's
  // and kMinority's second crash, kSplitDeciders' other side.
  int second = -1;
  CutWay way = CutWay::kBoth;
  // The nodes' failure detectors run (else only the nemesis reconfigures).
  bool detector = false;
  // How long a partition lasts; for crashes, the delay before the second
  // fault (kCrashDecider: after the first seal was seen; kCrashDuringRemove:
  // after the operator started; kMinority: after the first crash;
  // kRacingRemove: the nemesis's own reconfiguration, after the crash).
  int64_t fault_nanos = 0;
  // kCrashDecider (3 nodes) and kCrashDuringRemove: the second node comes
  // back (power cut: unsynced data dropped) this long after its crash.
  bool restart = false;
  int64_t restart_nanos = 0;

  // The static-layout plans: drops, crashes with restart, sync faults.
  static Plan For(uint64_t seed);
  // A node (often the primary sequencer) crashes for good under load.
  static Plan Reconfiguration(uint64_t seed);
  // Partitions: isolate the sequencer, a log unit or a client from the
  // head; or split two would-be decision makers.
  static Plan Partition(uint64_t seed);
  // Crashes around reconfiguration: of the decision maker, during the
  // nemesis's reconfiguration, of a minority of layout servers, and a
  // reconfiguration racing a detector's.
  static Plan ReconfigurationFault(uint64_t seed);
  // A node crashes (a power cut), the detectors take it out, it restarts
  // and the detectors bring it back by state transfer (wiping it first if
  // it holds divergent data), under load.
  static Plan Healing(uint64_t seed);

  bool layout_servers() const { return fault != Fault::kRestarts; }
  bool faultless() const { return fault == Fault::kRestarts && drop == 0 && crashes == 0; }
  std::string ToString() const;
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
  int64_t detected_after_nanos = 0;      // crash -> new layout, by the detectors
  uint64_t final_epoch = 0;              // of the newest committed layout
  uint64_t cut_messages = 0;             // dropped by partitions
  size_t epoch_observations = 0;         // epoch changes the monitor recorded
  bool hit_mid_reconfiguration = false;  // a crash landed before the commit
  bool nemesis_won = false;              // kRacingRemove: its layout was chosen
  bool stream_check_skipped = false;     // a primary sequencer restarted in place
  int64_t healed_after_nanos = 0;        // kCrashAndHeal: restart -> layout with it again
  std::vector<std::string> violations;

  bool operator==(const Outcome&) const = default;
  // Adds `o`'s counts into this one.
  void Add(const Outcome& o);
};

// Runs `plan` once, on this thread (it drives the simulation to the end).
Outcome RunPlan(const Plan& plan);

// Runs `plan` twice; returns what every seed must satisfy but did not: no
// violation, some progress, an identical replay (trace and outcome). `first`
// gets the first run.
std::vector<std::string> RunTwice(const Plan& plan, Outcome& first);

// The seeds to run: TALLY_SIM_SEED=N runs only N; TALLY_SIM_SEEDS=N runs
// 1..N; else 1..default_count.
std::vector<uint64_t> Seeds(uint64_t default_count);

// "seed N [plan] (replay: TALLY_SIM_SEED=N tests/<binary>)".
std::string ReplayHint(const Plan& plan, const std::string& binary);

}  // namespace tally::sim
