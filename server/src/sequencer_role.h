#pragma once

// The sequencer role of a node: a sequencer::Sequencer served as "seq.*",
// bootstrapped by the node itself from the log units' tails and stream maps
// (bootstrap.h). Until the bootstrap succeeds the sequencer answers
// FAILED_PRECONDITION; a background thread retries with backoff until one
// replica of every stripe answers.
//
// With layout servers (the layout lists some), the role follows the
// committed layouts: it polls them, and whenever a newer epoch is committed
// in which this node is the primary sequencer (sequencers[0]), it rebuilds
// itself in that epoch from the (sealed) log units — sequencer failover
// (docs/layout.md). A standby never bootstraps. Without layout servers the
// static layout is bootstrapped once.

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "tally/base/threads.h"
#include "tally/net/caching_transport.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"
#include "tally/sequencer/sequencer.h"
#include "tally/sequencer/sequencer_service.h"

namespace tally::server {

struct SequencerRoleOptions {
  std::chrono::milliseconds rpc_timeout{2000};  // per log.tail / log.stream_maps
  std::chrono::milliseconds backoff_min{100};   // first retry delay
  std::chrono::milliseconds backoff_max{5000};  // delays double up to this
  // How often committed layouts are polled (with layout servers only).
  std::chrono::milliseconds layout_poll{50};
  Threads* threads = nullptr;  // nullptr: SystemThreads()
};

class SequencerRole {
 public:
  // `transport` is not owned and must outlive the role.
  SequencerRole(proto::Layout layout, net::Transport* transport, SequencerRoleOptions options = {});
  // Stops the bootstrap thread (waiting at most one rpc_timeout).
  ~SequencerRole();
  SequencerRole(const SequencerRole&) = delete;
  SequencerRole& operator=(const SequencerRole&) = delete;

  // Registers seq.*. `registry` must not outlive the role.
  void Register(net::ServiceRegistry& registry);

  // Starts bootstrapping (and following layouts) in the background. Call
  // once, after the node serves on `self` (the node may be one of the log
  // units it asks).
  void StartBootstrap(std::string self);

  bool bootstrapped() const { return bootstrapped_.load(); }
  // The epoch bootstrapped last (meaningful once bootstrapped()).
  uint64_t epoch() const { return epoch_.load(); }
  sequencer::Sequencer& core() { return core_; }

 private:
  void Loop();
  // The newest layout: the static one, or a newer committed one.
  proto::Layout NewestLayout();
  // One bootstrap attempt in `layout`'s epoch.
  Status TryBootstrap(const proto::Layout& layout);
  // Sleeps up to `delay`, in slices, returning early (true) once stopping.
  bool SleepUnlessStopping(std::chrono::milliseconds delay);

  const proto::Layout static_layout_;
  net::Transport* const transport_;
  // The layout polls (every layout_poll) reuse one channel per layout
  // server; a new connection per poll cost every node a TCP connect,
  // accept and close 20 times a second per layout server, on the network
  // thread that also serves appends. Bootstraps (bulk stream maps) use
  // transport_ directly.
  net::CachingTransport polled_{transport_};
  const SequencerRoleOptions options_;
  Threads* const threads_;
  std::string self_;
  sequencer::Sequencer core_;
  sequencer::SequencerService service_{&core_};
  std::atomic<bool> bootstrapped_{false};
  std::atomic<uint64_t> epoch_{0};
  std::atomic<bool> stopping_{false};
  std::unique_ptr<ThreadHandle> thread_;
};

}  // namespace tally::server
