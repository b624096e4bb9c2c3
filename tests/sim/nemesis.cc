// The nemesis of a simulated run: the plan's faults (workload.h), injected
// at seeded instants while the workload runs, then waits for the cluster to
// converge. Convergence failures are violations: the checker needs a
// settled layout.

#include <algorithm>

#include "tally/client/reconfigure.h"
#include "workload_run.h"

namespace tally::sim {

namespace {

constexpr int64_t kMs = 1'000'000;

// Whether `layout` names `endpoint` as a log unit or a sequencer.
bool Names(const proto::Layout& layout, const std::string& endpoint) {
  for (const auto& seg : layout.segments()) {
    for (const auto& stripe : seg.stripes()) {
      for (const auto& u : stripe.log_units()) {
        if (u == endpoint) return true;
      }
    }
  }
  return std::find(layout.sequencers().begin(), layout.sequencers().end(), endpoint) !=
         layout.sequencers().end();
}

}  // namespace

void ClientRun::Nemesis() {
  switch (plan_.fault) {
    case Fault::kRestarts:
      Restarts();
      break;
    case Fault::kCrashForGood:
      ReconfigureOut();
      break;
    case Fault::kIsolateSequencer:
    case Fault::kIsolateUnit:
    case Fault::kIsolateClient:
    case Fault::kSplitDeciders:
      Isolate();
      break;
    case Fault::kCrashDecider:
      CrashDecider();
      break;
    case Fault::kCrashDuringRemove:
      CrashDuringRemove();
      break;
    case Fault::kMinority:
      Minority();
      break;
    case Fault::kRacingRemove:
      RacingRemove();
      break;
    case Fault::kCrashAndHeal:
      CrashAndHeal();
      break;
  }
  ++finished_;
}

void ClientRun::Restarts() {
  for (int k = 0; k < plan_.crashes; ++k) {
    Pause(60 * kMs);
    const int victim = static_cast<int>(Draw(static_cast<uint64_t>(cluster_.size())));
    if (plan_.sync_faults && Draw(2) == 0) {
      cluster_.FailSyncs(victim, 1);
      Pause(5 * kMs);
    }
    if (victim == 0) sequencer_restarted_ = true;
    cluster_.CrashNode(victim);
    Pause(300 * kMs);
    Status st = cluster_.StartNode(victim);
    if (!st.ok()) out_.violations.push_back("restart: " + st.ToString());
  }
}

void ClientRun::ReconfigureOut() {
  Pause(80 * kMs);
  if (plan_.victim == 0) sequencer_restarted_ = true;
  // One client stalls around the change: its tokens of the old epoch reach
  // the log units late, after the seal (or, without one, after the new
  // sequencer has rebuilt itself).
  cluster_.SetSlowSender("client-1", 300 * kMs);
  crash_at_ = cluster_.scheduler().now();
  cluster_.CrashNode(plan_.victim);
  Result<proto::Layout> next =
      Status(Code::kTimeout, "no failure detector reconfigured within 3 s");
  if (plan_.detector) {
    // Wait for the detectors (at most 3 s of virtual time).
    for (int k = 0; k < 300 && cluster_.layout().epoch() == 0; ++k) {
      Sleep(10 * kMs);
      (void)cluster_.RefreshLayout();
    }
    if (cluster_.layout().epoch() > 0) {
      next = cluster_.layout();
      out_.detected_after_nanos = cluster_.scheduler().now() - crash_at_;
    }
  } else {
    // The failure detector's delay, then the decision maker's change.
    Pause(100 * kMs);
    next = cluster_.RemoveNode(plan_.victim);
  }
  Pause(200 * kMs);
  cluster_.SetSlowSender("", 0);
  if (!next.ok()) {
    out_.violations.push_back("reconfiguration: " + next.status().ToString());
  } else if (next->epoch() != 1) {
    out_.violations.push_back("reconfiguration committed epoch " + std::to_string(next->epoch()) +
                              ", expected 1");
  }
}

// Partitions: cut, wait, heal. The failure detectors typically remove an
// isolated node (it then stays out: nothing re-adds it here); a client cut
// from the head must not change the layout, its appends fail cleanly.
void ClientRun::Isolate() {
  Pause(80 * kMs);
  const std::string victim = SimCluster::NodeName(plan_.victim);
  switch (plan_.fault) {
    case Fault::kIsolateClient:
      CutPair("client-1", victim);
      break;
    case Fault::kSplitDeciders:
      CutPair(victim, SimCluster::NodeName(plan_.second));
      break;
    default:
      cluster_.Isolate(victim);
      break;
  }
  Sleep(plan_.fault_nanos);
  cluster_.Heal();
  Settle();
}

void ClientRun::CutPair(const std::string& a, const std::string& b) {
  switch (plan_.way) {
    case CutWay::kBoth:
      cluster_.Cut({a}, {b}, /*both_ways=*/true);
      break;
    case CutWay::kForward:
      cluster_.Cut({a}, {b}, /*both_ways=*/false);
      break;
    case CutWay::kBackward:
      cluster_.Cut({b}, {a}, /*both_ways=*/false);
      break;
  }
}

// A node crashes; once the decision maker's reconfiguration has sealed a
// unit, the decision maker crashes too (during the seal, the Paxos round
// or just after the commit, by the seed). With 5 nodes the others take
// over; with 3 the majority is gone until it restarts.
void ClientRun::CrashDecider() {
  Pause(80 * kMs);
  CrashForGood(plan_.victim);
  const uint64_t next = cluster_.NewestCommitted().epoch() + 1;
  for (const int64_t deadline = cluster_.scheduler().now() + 3000 * kMs;
       cluster_.scheduler().now() < deadline;) {
    bool sealed = false;
    for (const auto& [i, epoch] : cluster_.SealedEpochs(std::chrono::milliseconds(5))) {
      sealed |= epoch >= next;
    }
    if (sealed) break;
    Sleep(1 * kMs);
  }
  Sleep(plan_.fault_nanos);
  out_.hit_mid_reconfiguration = cluster_.NewestCommitted().epoch() < next;
  if (plan_.restart) {
    cluster_.CrashNode(plan_.second);
    Sleep(plan_.restart_nanos);
    Restart(plan_.second);
  } else {
    CrashForGood(plan_.second);
  }
  AwaitRemoval(10'000 * kMs);
  Settle();
}

// No failure detectors: the nemesis is the operator. A node crashes; the
// operator removes it (client::Reconfigure on its own thread) and another
// node crashes during that, restarting later (before or after the
// operator's seal deadline). The operator retries until the node is out.
void ClientRun::CrashDuringRemove() {
  Pause(80 * kMs);
  CrashForGood(plan_.victim);
  Pause(100 * kMs);
  Result<proto::Layout> first = Status(Code::kUnavailable, "not run");
  bool done = false;
  auto op = cluster_.threads().Start("operator", [&] {
    first = cluster_.RemoveNode(plan_.victim);
    done = true;
  });
  Sleep(plan_.fault_nanos);
  if (plan_.sync_faults) {
    cluster_.FailSyncs(plan_.second, 1);
    Pause(5 * kMs);
  }
  out_.hit_mid_reconfiguration = !done;
  cluster_.CrashNode(plan_.second);
  Sleep(plan_.restart_nanos);
  Restart(plan_.second);
  op->Join();
  const std::string what = "removing " + SimCluster::NodeName(plan_.victim);
  if (!first.ok()) CheckReconfigureError(what, first.status());
  for (int k = 0; k < 5 && Names(cluster_.layout(), SimCluster::NodeName(plan_.victim)); ++k) {
    auto again = cluster_.RemoveNode(plan_.victim);
    if (!again.ok()) {
      CheckReconfigureError(what + " again", again.status());
      Sleep(200 * kMs);
    }
  }
  AwaitRemoval(1000 * kMs);
  Settle();
}

// Two of five layout servers crash for good (the second maybe during the
// first's reconfiguration): a majority remains, the log goes on.
void ClientRun::Minority() {
  Pause(80 * kMs);
  CrashForGood(plan_.victim);
  Sleep(plan_.fault_nanos);
  CrashForGood(plan_.second);
  AwaitRemoval(10'000 * kMs);
  Settle();
}

// A node crashes; while the detectors work on it, the nemesis proposes its
// own next layout (without the node and without the last standby
// sequencer, so that it differs from theirs): two decision makers with
// different values for one epoch. Paxos chooses one; both must adopt it.
void ClientRun::RacingRemove() {
  Pause(80 * kMs);
  CrashForGood(plan_.victim);
  Sleep(plan_.fault_nanos);
  auto next = client::LayoutWithout(cluster_.layout(), SimCluster::NodeName(plan_.victim));
  if (!next.ok()) {
    out_.violations.push_back("the nemesis's layout: " + next.status().ToString());
    return;
  }
  if (next->sequencers_size() > 1) next->mutable_sequencers()->RemoveLast();
  auto r = cluster_.Reconfigure(*next);
  if (r.ok()) {
    out_.nemesis_won = r->SerializeAsString() == next->SerializeAsString();
  } else {
    CheckReconfigureError("the nemesis's reconfiguration", r.status());
  }
  AwaitRemoval(10'000 * kMs);
  Settle();
}

void ClientRun::CrashAndHeal() {
  Pause(80 * kMs);
  const std::string name = SimCluster::NodeName(plan_.victim);
  CrashForGood(plan_.victim);
  AwaitRemoval(10'000 * kMs);
  crashed_for_good_.erase(plan_.victim);
  Sleep(plan_.restart_nanos);
  const int64_t restarted_at = cluster_.scheduler().now();
  Restart(plan_.victim);
  // Healed: the node is back at full replication, in every chain (3 long).
  auto healed = [&](const proto::Layout& l) {
    if (l.segments_size() == 0) return false;
    for (const auto& stripe : l.segments(l.segments_size() - 1).stripes()) {
      const auto& u = stripe.log_units();
      if (u.size() != 3 || std::find(u.begin(), u.end(), name) == u.end()) return false;
    }
    return true;
  };
  const int64_t deadline = restarted_at + 15'000 * kMs;
  while (!healed(cluster_.NewestCommitted())) {
    if (cluster_.scheduler().now() >= deadline) {
      out_.violations.push_back(name +
                                " restarted but was not brought back into its chains "
                                "within 15 s (epoch " +
                                std::to_string(cluster_.NewestCommitted().epoch()) + ")");
      return;
    }
    Sleep(10 * kMs);
  }
  out_.healed_after_nanos = cluster_.scheduler().now() - restarted_at;
  Settle();
}

void ClientRun::CrashForGood(int i) {
  crash_at_ = cluster_.scheduler().now();
  cluster_.CrashNode(i);
  crashed_for_good_.insert(i);
}

void ClientRun::Restart(int i) {
  Status st = cluster_.StartNode(i);
  if (!st.ok()) {
    out_.violations.push_back("restart: " + st.ToString());
    return;
  }
  const proto::Layout newest = cluster_.NewestCommitted();
  if (newest.sequencers_size() > 0 && newest.sequencers(0) == SimCluster::NodeName(i)) {
    primary_restarted_in_ = std::max(primary_restarted_in_, newest.epoch() + 1);
  }
}

void ClientRun::AwaitRemoval(int64_t max_nanos) {
  auto names_a_dead_node = [&](const proto::Layout& l) {
    for (int i : crashed_for_good_) {
      if (Names(l, SimCluster::NodeName(i))) return true;
    }
    return false;
  };
  const int64_t deadline = cluster_.scheduler().now() + max_nanos;
  proto::Layout newest = cluster_.NewestCommitted();
  while (names_a_dead_node(newest)) {
    if (cluster_.scheduler().now() >= deadline) {
      out_.violations.push_back("the layout of epoch " + std::to_string(newest.epoch()) +
                                " still names a node that crashed for good, " +
                                std::to_string(max_nanos / kMs) +
                                " ms after the faults: the cluster did not converge");
      return;
    }
    Sleep(10 * kMs);
    newest = cluster_.NewestCommitted();
  }
}

void ClientRun::Settle() {
  uint64_t epoch = cluster_.NewestCommitted().epoch();
  int64_t since = cluster_.scheduler().now();
  const int64_t deadline = since + 6000 * kMs;
  while (cluster_.scheduler().now() < deadline) {
    Sleep(10 * kMs);
    const uint64_t e = cluster_.NewestCommitted().epoch();
    if (e != epoch) {
      epoch = e;
      since = cluster_.scheduler().now();
    } else if (cluster_.scheduler().now() - since >= 500 * kMs) {
      return;
    }
  }
  out_.violations.push_back("the layout kept changing for 6 s after the faults (now epoch " +
                            std::to_string(epoch) + ")");
}

void ClientRun::CheckReconfigureError(const std::string& what, const Status& st) {
  switch (st.code()) {
    case Code::kUnavailable:  // a unit could not be sealed, or no majority
    case Code::kTimeout:
    case Code::kWrongEpoch:  // another reconfiguration moved on
      return;
    case Code::kIoError:
      if (plan_.sync_faults) return;
      break;
    default:
      break;
  }
  out_.violations.push_back(what +
                            " failed with an error no injected fault explains: " + st.ToString());
}

}  // namespace tally::sim
