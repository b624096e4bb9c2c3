#pragma once

// Cooperative threads over a SimScheduler, so blocking code (the client
// runtime) runs inside a deterministic simulation (docs/simulation.md).
//
// Each thread started here is a real std::thread, but only one thread of the
// simulation runs at any moment: the scheduler's thread (running tasks) or
// exactly one simulated thread, which holds the baton until it blocks in
// Wait/SleepNanos or returns. A simulated thread resumes only from a
// scheduler task: Start, a Wake and the end of a sleep each schedule one.
// So the interleaving is fixed by the scheduler's seed, and virtual time
// advances only through the scheduler.
//
// From the scheduler's own thread (outside a task) Wait, SleepNanos and
// ThreadHandle::Join run the scheduler until they are done, so a test can
// call blocking code directly from its main thread. Calling them from
// inside a task is a bug (it would wait for itself) and aborts.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "tally/base/threads.h"
#include "tally/net/sim_scheduler.h"

namespace tally::net {

class SimThreads final : public Threads {
 public:
  // The threads that drive this object must be the scheduler's runner
  // thread (the one calling its Run* methods) and the threads started here.
  explicit SimThreads(std::shared_ptr<SimScheduler> scheduler);
  // Runs the scheduler until every started thread returned (at most
  // `kDrainEvents` tasks); threads still blocked after that are detached and
  // stay blocked (reported on stderr).
  ~SimThreads() override;

  SimThreads(const SimThreads&) = delete;
  SimThreads& operator=(const SimThreads&) = delete;

  std::unique_ptr<ThreadHandle> Start(std::string name, std::function<void()> fn) override;
  void Wait(const std::function<void(Wake)>& start) override;
  void SleepNanos(int64_t nanos) override;

  // Threads started and not yet returned.
  size_t live() const;
  // Names of the threads that have not returned, comma-separated (for
  // diagnosing a simulation that went idle with blocked threads).
  std::string LiveNames() const;

  static constexpr uint64_t kDrainEvents = 1'000'000;

  struct State;
  struct SimThread;

 private:
  std::shared_ptr<SimScheduler> scheduler_;
  std::shared_ptr<State> state_;
};

}  // namespace tally::net
