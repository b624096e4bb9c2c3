#pragma once

// Failure detection and the reconfiguration it drives (docs/layout.md,
// "Failure detection"). Runs in every node with the layout role.
//
// Every `period` the detector pings (layout.get) every log unit and
// sequencer of the newest layout. A peer is suspected after `misses`
// consecutive failed pings spanning at least its adaptive timeout: the
// larger of `min_timeout` and 4 x the peer's smoothed round-trip time. Only
// one node acts on suspicions: the decision maker, the live layout server
// with the lowest node id that this node can reach (itself included).
// A peer that the decision maker cannot reach is removed even if others
// can (asymmetric failures are treated as symmetric). The decision maker
// runs client::Reconfigure with the layout without every suspect (one
// change, so two dead units of one chain leave together); Paxos makes
// concurrent decision makers (e.g. across a partition) agree on one layout
// per epoch.
//
// Healing: the detector also pings the nodes the layout lists but no chain
// holds (removed ones). When one answers `heal_after` rounds in a row, the
// decision maker brings it back with client::AddNode (state transfer, seal,
// Paxos) on a thread of its own, so detection goes on meanwhile; a node
// holding divergent data is wiped first (it is in no chain). A failed
// attempt is retried after a backoff that doubles up to `heal_backoff_max`.

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "tally/base/env.h"
#include "tally/base/ids.h"
#include "tally/base/threads.h"
#include "tally/net/caching_transport.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"

namespace tally::server {

struct FailureDetectorOptions {
  std::chrono::milliseconds period{50};
  std::chrono::milliseconds ping_timeout{150};
  std::chrono::milliseconds min_timeout{200};
  int misses = 3;
  // Bring removed nodes back when they answer again (see above).
  bool heal = true;
  int heal_after = 3;
  std::chrono::milliseconds heal_backoff{1000};
  std::chrono::milliseconds heal_backoff_max{30000};
  // A unit sealed above the committed epoch this long with no newer layout
  // agreed: the decision maker commits the next epoch with the same members
  // (the reconfiguration that sealed it died between seal and commit).
  std::chrono::milliseconds stalled_seal_grace{1000};
  // Per RPC of a healing's state transfer (its seal and Paxos use 2 x
  // ping_timeout per RPC, retried until 2 s, like a removal).
  std::chrono::milliseconds heal_rpc_timeout{5000};
  Threads* threads = nullptr;  // nullptr: SystemThreads()
  Clock* clock = nullptr;      // nullptr: the real clock
};

// What one peer looks like from here. Pure bookkeeping, unit-tested.
class PeerHealth {
 public:
  void Success(int64_t now_nanos, int64_t rtt_nanos);
  void Failure(int64_t now_nanos);
  // Suspected: `misses` failures in a row, the first at least `timeout`
  // ago, where timeout = max(min_timeout, 4 x smoothed RTT).
  bool Suspected(int64_t now_nanos, int misses, int64_t min_timeout_nanos) const;
  int64_t smoothed_rtt_nanos() const { return srtt_; }

 private:
  int64_t srtt_ = 0;
  int failures_ = 0;
  int64_t first_failure_ = 0;
};

class FailureDetector {
 public:
  // `self` is this node's endpoint and `self_id` its id; `static_layout`
  // the layout it was started with (it follows newer committed ones).
  // `transport` must outlive the detector.
  FailureDetector(std::string self, NodeId self_id, proto::Layout static_layout,
                  net::Transport* transport, FailureDetectorOptions options = {});
  // Stops the detector thread.
  ~FailureDetector();
  FailureDetector(const FailureDetector&) = delete;
  FailureDetector& operator=(const FailureDetector&) = delete;

  void Start();

 private:
  void Loop();
  // One round: ping, then maybe reconfigure. Returns the layout in force.
  void Round(proto::Layout& layout);
  // Pings every peer at once: peer -> (answered, round-trip nanos).
  std::map<std::string, std::pair<bool, int64_t>> PingAll(const std::set<std::string>& peers);
  bool IsDecisionMaker(const proto::Layout& layout);
  // Whether a log unit of `layout` among `answered` is sealed above
  // layout.epoch(): a reconfiguration sealed it and no layout of the next
  // epoch is agreed (yet).
  bool SealedAhead(const proto::Layout& layout, const std::set<std::string>& answered);
  // SealedAhead for at least stalled_seal_grace in a row: its reconfigurer
  // is gone (it crashed, or lost its majority, between seal and commit).
  bool StalledSeal(const proto::Layout& layout, const std::set<std::string>& answered);
  // Nodes the layout lists that no chain holds and that could join one.
  std::set<std::string> Removed(const proto::Layout& layout) const;
  // Starts healing a removed node that answered often enough, if none is
  // running; joins a finished one.
  void MaybeHeal(const proto::Layout& layout, const std::set<std::string>& removed,
                 const std::map<std::string, std::pair<bool, int64_t>>& answers);
  void Heal(proto::Layout layout, std::string endpoint);

  // A removed node's answers, and when it may be healed again.
  struct Returning {
    int answers = 0;         // consecutive rounds it answered
    int64_t not_before = 0;  // clock nanos: no attempt before
    int64_t backoff = 0;     // nanos: the next failure's pause
  };

  const std::string self_;
  const NodeId self_id_;
  const proto::Layout static_layout_;
  net::Transport* const transport_;
  // What the detector asks every round (layouts, pings, tails), on channels
  // kept from round to round. Healing and reconfiguration use transport_:
  // a state transfer's reads must not delay the pings.
  net::CachingTransport polled_;
  const FailureDetectorOptions options_;
  Threads* const threads_;
  Clock* const clock_;
  std::map<std::string, PeerHealth> peers_;     // detector thread only
  std::map<std::string, Returning> returning_;  // detector thread only
  int64_t sealed_ahead_since_ = 0;              // detector thread only; 0: not sealed ahead
  // The healing thread, if one was started (joined by the detector thread).
  std::unique_ptr<ThreadHandle> healer_;
  std::atomic<bool> healing_{false};
  // Set by the healing thread before healing_ drops: whether it succeeded.
  std::string healed_endpoint_;
  bool healed_ok_ = false;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<ThreadHandle> thread_;
};

}  // namespace tally::server
