#pragma once

// The run behind RunPlan (workload.h), private to the harness: the cluster,
// the clients and the threads of one seed. workload_run.cc holds the
// workload, the epoch monitor and the checker; nemesis.cc the faults.

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "history.h"
#include "sim_cluster.h"
#include "workload.h"

namespace tally::sim {

class ClientRun {
 public:
  explicit ClientRun(Plan plan);
  Outcome Run();

 private:
  Outcome Fail(std::string why);
  // Runs the scheduler until `done` holds; false if it went idle (or hit
  // the event budget) first.
  bool PumpUntil(const std::function<bool()>& done);
  uint64_t Draw(uint64_t n) { return cluster_.random().Uniform(n); }
  void Pause(int64_t max_nanos);
  void Sleep(int64_t nanos) { cluster_.threads().SleepNanos(nanos); }

  void Writer(int c, int w);
  void Reader(int c);
  // Samples every client's layout, every layout server's committed layouts
  // and (every other round) every unit's seal into the history, every 5 ms
  // until the checker is done.
  void Monitor();
  void SampleEpochs(bool seals);
  void Checker();
  void CheckStreams(client::Client& client);

  // nemesis.cc
  void Nemesis();
  void Restarts();
  void ReconfigureOut();
  // kCrashAndHeal: crash, removal by the detectors, restart, healing.
  void CrashAndHeal();
  void Isolate();
  void CutPair(const std::string& a, const std::string& b);
  void CrashDecider();
  void CrashDuringRemove();
  void Minority();
  void RacingRemove();
  // Crashes node `i` for good (the final layout must leave it out).
  void CrashForGood(int i);
  // Restarts node `i`, noting whether it was the primary sequencer of the
  // newest committed epoch (a restart in place: docs/simulation.md, "Known
  // limits").
  void Restart(int i);
  // Waits (virtual time, at most `max_nanos`) until the newest committed
  // layout names no node crashed for good as a log unit or sequencer;
  // a violation if it never does.
  void AwaitRemoval(int64_t max_nanos);
  // Waits until the newest committed epoch has not changed for 500 ms (at
  // most 6 s), so that the checker starts on a settled layout.
  void Settle();
  // A reconfiguration the nemesis ran ended with `st`: only the errors its
  // contract names for the faults injected are fine.
  void CheckReconfigureError(const std::string& what, const Status& st);

  const Plan plan_;
  SimCluster cluster_;
  History history_;
  Outcome out_;
  std::vector<std::unique_ptr<client::Client>> clients_;
  std::map<std::string, std::set<uint64_t>> stream_acks_;
  std::set<int> crashed_for_good_;
  bool sequencer_restarted_ = false;
  uint64_t primary_restarted_in_ = 0;  // epoch + 1 of the last in-place primary restart
  int64_t crash_at_ = 0;
  int writers_done_ = 0;
  size_t finished_ = 0;
  bool monitor_stop_ = false;
  bool monitor_done_ = false;
};

}  // namespace tally::sim
