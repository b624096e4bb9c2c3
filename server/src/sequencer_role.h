#pragma once

// The sequencer role of a node: a sequencer::Sequencer served as "seq.*",
// bootstrapped by the node itself in its layout's epoch from the log units'
// tails and stream maps (bootstrap.h). Until the bootstrap succeeds the
// sequencer answers FAILED_PRECONDITION; a background thread retries with
// backoff until one replica of every stripe answers.

#include <atomic>
#include <chrono>
#include <memory>

#include "tally/base/threads.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"
#include "tally/sequencer/sequencer.h"
#include "tally/sequencer/sequencer_service.h"

namespace tally::server {

struct SequencerRoleOptions {
  std::chrono::milliseconds rpc_timeout{2000};  // per log.tail / log.stream_maps
  std::chrono::milliseconds backoff_min{100};   // first retry delay
  std::chrono::milliseconds backoff_max{5000};  // delays double up to this
  Threads* threads = nullptr;                   // nullptr: SystemThreads()
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

  // Starts bootstrapping in the background. Call once, after the node
  // serves (the node may be one of the log units it asks).
  void StartBootstrap();

  bool bootstrapped() const { return bootstrapped_.load(); }
  sequencer::Sequencer& core() { return core_; }

 private:
  void BootstrapLoop();
  // One attempt; OK once the sequencer is bootstrapped.
  Status TryBootstrap();

  const proto::Layout layout_;
  net::Transport* const transport_;
  const SequencerRoleOptions options_;
  sequencer::Sequencer core_;
  sequencer::SequencerService service_{&core_};
  std::atomic<bool> bootstrapped_{false};

  // Sleeps up to `delay`, in slices, returning early (true) once stopping.
  bool SleepUnlessStopping(std::chrono::milliseconds delay);

  Threads* const threads_;
  std::atomic<bool> stopping_{false};
  std::unique_ptr<ThreadHandle> thread_;
};

}  // namespace tally::server
