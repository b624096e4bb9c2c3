#pragma once

// A deterministic Scheduler over virtual time, for whole-cluster simulation
// (docs/simulation.md): one thread, one seed, no real clock. Time only moves
// when the owner runs tasks; tasks due at the same virtual time run in an
// order drawn from the seed, so that one seed replays one interleaving and
// different seeds explore different ones.

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "tally/base/mem_env.h"
#include "tally/net/inproc_transport.h"

namespace tally::net {

struct SimSchedulerOptions {
  uint64_t seed = 1;
  // Virtual time at construction (ManualClock's default origin).
  int64_t start_nanos = 1'000'000'000;
  // True: tasks due at the same time run in a seed-chosen order (this
  // deliberately relaxes Scheduler's "same time runs in the order scheduled").
  // False: FIFO among equal times, as ThreadScheduler.
  bool reorder_ties = true;
};

// Threading: Schedule is thread-safe (a mutex guards the queue), but the
// run methods (RunNext, RunUntilIdle, RunFor) must all be called from one
// thread, never from inside a task (checked by assertions in debug builds).
// Determinism holds only when every Schedule call is made by tasks or by
// the running thread, i.e. nothing else in the process runs threads that
// schedule work. A task that throws propagates out of the run method; the
// task is already removed from the queue.
class SimScheduler final : public Scheduler {
 public:
  explicit SimScheduler(SimSchedulerOptions options = {});
  ~SimScheduler() override;

  SimScheduler(const SimScheduler&) = delete;
  SimScheduler& operator=(const SimScheduler&) = delete;

  // Queues `fn` at now() + max(delay_nanos, 0). Never runs it here.
  void Schedule(int64_t delay_nanos, std::function<void()> fn) override;

  // Runs the earliest task, first advancing the clock to its due time.
  // Returns false (and does nothing) when the queue is empty.
  bool RunNext();

  // Runs tasks until none is queued or `max_events` have run. Returns the
  // number run. The clock ends at the last task's due time.
  uint64_t RunUntilIdle(uint64_t max_events = UINT64_MAX);

  // Runs every task due within `duration` from now (including tasks those
  // schedule, if also due in the window), then sets the clock to exactly
  // now + duration. Returns the number of tasks run. Negative is zero.
  uint64_t RunFor(std::chrono::nanoseconds duration);

  // Virtual time, in nanoseconds (the clock's NowNanos()).
  int64_t now() const { return clock_.NowNanos(); }

  // The virtual clock, to hand to Env::clock of simulated components. Only
  // this scheduler should advance it.
  ManualClock* clock() { return &clock_; }

  // Tasks queued and not yet run.
  size_t pending() const;
  // Tasks run so far.
  uint64_t executed() const { return executed_; }

  // Called before each task runs with (due time, scheduling sequence number:
  // 0 for the first task ever scheduled). For traces; nullptr clears it.
  // Set it only while not running.
  void SetTaskObserver(std::function<void(int64_t due_nanos, uint64_t seq)> observer);

 private:
  struct Task {
    int64_t due_nanos = 0;
    uint64_t tie = 0;  // seed-drawn (or 0 when not reordering)
    uint64_t seq = 0;
    std::function<void()> fn;
    bool operator>(const Task& o) const {
      if (due_nanos != o.due_nanos) return due_nanos > o.due_nanos;
      if (tie != o.tie) return tie > o.tie;
      return seq > o.seq;
    }
  };

  // Pops the earliest task if it is due at or before `limit`.
  bool PopDue(int64_t limit, Task* out);
  void RunTask(Task task);
  void CheckRunner();

  const bool reorder_ties_;
  mutable ManualClock clock_;  // NowNanos() is not const, but only reads
  SeededRandom random_;
  mutable std::mutex mu_;
  std::priority_queue<Task, std::vector<Task>, std::greater<Task>> tasks_;  // GUARDED_BY(mu_)
  uint64_t next_seq_ = 0;                                                   // GUARDED_BY(mu_)
  // Runner thread only.
  uint64_t executed_ = 0;
  bool running_ = false;
  std::thread::id runner_;
  std::function<void(int64_t, uint64_t)> observer_;
};

// A seeded link policy for InProcessNetwork: each message is dropped with
// probability `drop_probability`, else delayed by a uniform random
// [min_delay_nanos, max_delay_nanos]. Messages overtake each other when
// their delays differ, so reordering comes from the delays. The draws come
// from SeededRandom(seed), one or two per message in the order the network
// asks, so a single-threaded run is reproducible. Thread-safe.
struct SimLinkOptions {
  int64_t min_delay_nanos = 100'000;    // 0.1 ms
  int64_t max_delay_nanos = 2'000'000;  // 2 ms
  double drop_probability = 0.0;
};
LinkPolicy MakeSeededLinkPolicy(uint64_t seed, SimLinkOptions options = {});

}  // namespace tally::net
