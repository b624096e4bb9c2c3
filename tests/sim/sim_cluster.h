#pragma once

// A whole Tally cluster in one process, on one seed and virtual time
// (docs/simulation.md): real server::Nodes (log unit + sequencer roles, the
// log units in their inline modes on fault-injecting in-memory disks) and
// real client::Clients, all on an InProcessNetwork driven by a SimScheduler,
// with blocking code on net::SimThreads. Faults: seeded message delay,
// reordering and drops; node crash (with a power cut that drops unsynced
// data) and restart; injected sync failures; partitions (links cut between
// chosen names, one way or both, then healed).
//
// Threading: everything runs on the scheduler's thread or on SimThreads, one
// at a time. Restart blocks (it waits for the crash's teardown), so call
// StartNode and CrashNode from a SimThread or from the main thread outside
// a task.

#include <rocksdb/env.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "node.h"
#include "tally/base/fault_env.h"
#include "tally/base/mem_env.h"
#include "tally/client/client.h"
#include "tally/net/inproc_transport.h"
#include "tally/net/sim_scheduler.h"
#include "tally/net/sim_threads.h"
#include "tally/proto/layout.pb.h"

namespace tally::sim {

struct SimClusterOptions {
  uint64_t seed = 1;
  int nodes = 3;    // each a log unit; node 0 also the sequencer
  int stripes = 1;  // chains of min(3, nodes) units, rotated per stripe
  // The primary sequencer's node. With layout_servers, the others follow it
  // in the sequencer list as standbys (primary_sequencer + 1, ..., wrapping).
  int primary_sequencer = 0;
  net::SimLinkOptions links{.min_delay_nanos = 50'000, .max_delay_nanos = 2'000'000};
  // Every node is also a layout server and a (standby) sequencer, the
  // layout lists them, and RemoveNode reconfigures through them.
  bool layout_servers = false;
  // The layout servers' failure detectors run (and reconfigure on crashes).
  bool failure_detector = false;
  // The failure detectors bring a removed node back when it answers again
  // (healing: state transfer, then the layout with it).
  bool heal = false;
};

// An order-sensitive 64-bit hash of everything a run did.
class Trace {
 public:
  void Add(uint64_t v);
  void Add(std::string_view s);
  uint64_t hash() const { return h_; }
  uint64_t events() const { return events_; }

 private:
  uint64_t h_ = 0;
  uint64_t events_ = 0;
};

class SimCluster {
 public:
  explicit SimCluster(SimClusterOptions options);
  // Stops clients' channels, nodes and the network, then drains the
  // scheduler.
  ~SimCluster();

  SimCluster(const SimCluster&) = delete;
  SimCluster& operator=(const SimCluster&) = delete;

  // Starts every node (from the main thread, before running).
  Status StartAll();

  // (Re)starts node `i` on its disk. Errors: as server::Node::Start.
  Status StartNode(int i);
  // Kills node `i` (no-op if it is down): from now on nothing it sends or
  // is sent arrives, and up(i) is false. In the background its threads wind
  // down (a reconfiguration it runs fails), then its endpoint refuses calls
  // and its disk loses every write not yet synced (a power cut); StartNode
  // waits for that.
  void CrashNode(int i);
  bool up(int i) const { return nodes_[i].node != nullptr; }
  int size() const { return static_cast<int>(nodes_.size()); }
  // Takes node `i` out of the layout: the next epoch's layout without it,
  // sealed on its log units and agreed by the layout servers
  // (client::Reconfigure), as a failure detector would. Blocks: call from a
  // SimThread. Returns the committed layout, which becomes layout().
  Result<proto::Layout> RemoveNode(int i);
  // Proposes `next` (epoch layout().epoch() + 1) as RemoveNode does: seal,
  // then Paxos as proposer `proposer`. Returns the layout committed for that
  // epoch (another decision maker's, if it won: compare), which becomes
  // layout(). Errors: as client::Reconfigure. Blocks: call from a SimThread.
  Result<proto::Layout> Reconfigure(const proto::Layout& next, NodeId proposer = NodeId(1000));
  // Adopts the newest layout the layout servers committed (e.g. after the
  // nodes' failure detectors reconfigured). Blocks: call from a SimThread.
  Result<proto::Layout> RefreshLayout();

  // Every committed layout on the layout servers of the nodes that are up,
  // checked for agreement: one layout per epoch on every server that has
  // it, epochs only growing (each committed epoch's layout has that epoch,
  // and no server's latest is below the highest committed on a majority).
  // Returns one line per violation.
  std::vector<std::string> CheckCommittedLayouts();

  // What the layout servers of the nodes that are up hold, read in process
  // (no message, no partition in the way): (node name, committed layout),
  // for every epoch from 1 up that each holds. Call from a SimThread or
  // outside the run.
  std::vector<std::pair<std::string, proto::Layout>> CommittedLayouts();
  // The committed layout of the highest epoch any node that is up holds
  // (in process), or layout() if none holds one.
  proto::Layout NewestCommitted();
  // Each up node's log unit's sealed epoch (log.tail over an observer
  // transport, all at once, `timeout` each; a unit that does not answer is
  // left out). Blocks: call from a SimThread.
  std::map<int, uint64_t> SealedEpochs(std::chrono::milliseconds timeout);

  // Partitions, seeded and traced like every other fault. Names are
  // transport names: NodeName(i) for a node (its server and the calls it
  // makes) and a client's name. A cut drops every message from a name in
  // `from` to a name in `to`, requests and responses alike, so a call across
  // a one-way cut may take effect while its caller only sees a timeout;
  // `both_ways` cuts the reverse direction too. A name's links to itself
  // and observer transports' links are never cut. Thread-safe.
  void Cut(const std::vector<std::string>& from, const std::vector<std::string>& to,
           bool both_ways);
  // Cuts `name` off from every other name, present or future, both ways.
  void Isolate(const std::string& name);
  // Removes every cut and isolation.
  void Heal();
  // Messages dropped by cuts (and by crashes, CrashNode) so far.
  uint64_t cut_messages() const;

  // The next `count` syncs on node `i`'s disk fail (the unit then refuses
  // writes until it restarts).
  void FailSyncs(int i, int count);

  // A client named `name` (its own transport), running on SimThreads and
  // virtual time. `tweak` may adjust the options before creation.
  Result<std::unique_ptr<client::Client>> NewClient(
      const std::string& name, const std::function<void(client::ClientOptions&)>& tweak = nullptr);
  std::unique_ptr<net::Transport> NewTransport(const std::string& name);
  // A transport for the test's own observers: partitions never cut it.
  std::unique_ptr<net::Transport> NewObserverTransport(const std::string& name);

  // Drop probability of every message from now on.
  void SetDropProbability(double p);
  // Messages sent by node/client `name` take up to `max_extra_nanos` more
  // (seeded), e.g. a client stalled between its token and its writes; 0
  // clears it.
  void SetSlowSender(const std::string& name, int64_t max_extra_nanos);

  static std::string NodeName(int i) { return "node-" + std::to_string(i); }
  const proto::Layout& layout() const { return layout_; }
  // The log units of the chain that holds `address`.
  std::vector<std::string> ChainOf(uint64_t address) const;

  net::SimScheduler& scheduler() { return *sched_; }
  net::SimThreads& threads() { return *threads_; }
  Trace& trace() { return trace_; }
  Random& random() { return random_; }

 private:
  // Calls `fn(node name, epoch, layout)` for every epoch >= 1 that a layout
  // server of a node that is up holds as committed.
  void ForEachCommitted(
      const std::function<void(const std::string& who, uint64_t epoch, const proto::Layout&)>& fn);
  struct SimNode {
    MemFileSystem mem;
    std::unique_ptr<FaultInjectionFileSystem> disk;
    std::unique_ptr<SeededRandom> random;
    std::unique_ptr<net::Transport> transport;
    std::unique_ptr<server::Node> node;
    // Tears a crashed node down, then cuts its power (CrashNode).
    std::unique_ptr<ThreadHandle> reaper;
  };
  void InstallLinkPolicy();
  bool IsCutLocked(std::string_view from, std::string_view to) const;

  const SimClusterOptions options_;
  std::shared_ptr<net::SimScheduler> sched_;
  SeededRandom random_;
  Trace trace_;
  double drop_probability_ = 0.0;
  std::string slow_sender_;
  int64_t slow_extra_nanos_ = 0;
  uint64_t link_seed_ = 0;
  mutable std::mutex partition_mu_;
  std::set<std::pair<std::string, std::string>> cuts_;  // GUARDED_BY(partition_mu_)
  std::set<std::string, std::less<>> isolated_;         // GUARDED_BY(partition_mu_)
  std::set<std::string, std::less<>> observers_;        // GUARDED_BY(partition_mu_)
  std::set<std::string, std::less<>> crashing_;         // GUARDED_BY(partition_mu_)
  uint64_t cut_messages_ = 0;                           // GUARDED_BY(partition_mu_)
  std::unique_ptr<net::Transport> observer_;            // SealedEpochs' transport
  proto::Layout layout_;
  std::unique_ptr<rocksdb::Env> rocks_env_;
  std::unique_ptr<net::InProcessNetwork> network_;
  std::unique_ptr<net::SimThreads> threads_;
  std::vector<SimNode> nodes_;
  std::vector<std::unique_ptr<net::Transport>> client_transports_;
  std::unique_ptr<net::Transport> reconfigurer_;
};

}  // namespace tally::sim
