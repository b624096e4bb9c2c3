#pragma once

// The in-process transport: the same Channel/Server interface as TCP, for
// tests and the deterministic cluster simulation. Messages travel as
// encoded Frames (so size limits and parsing apply exactly as on TCP),
// delivered through a pluggable Scheduler that owns time and order, with a
// per-link fault policy (deliver, drop, delay).

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tally/net/transport.h"

namespace tally::net {

// Runs deferred work. A simulation implements it over virtual time on one
// thread; ThreadScheduler is the real-time default.
class Scheduler {
 public:
  virtual ~Scheduler() = default;
  // Runs `fn` once, `delay_nanos` (>= 0) from now in the scheduler's time.
  // Runs `fn` after `delay_nanos`. The order of tasks due at the same time
  // is the scheduler's choice (ThreadScheduler: the order scheduled;
  // SimScheduler: drawn from its seed, to explore reorderings). Never runs
  // `fn` inside Schedule. Thread-safe.
  virtual void Schedule(int64_t delay_nanos, std::function<void()> fn) = 0;
};

// Real time (steady clock), one thread. Destroying it stops the thread;
// tasks not yet run are destroyed without running. Thread-safe.
class ThreadScheduler final : public Scheduler {
 public:
  ThreadScheduler();
  ~ThreadScheduler() override;
  void Schedule(int64_t delay_nanos, std::function<void()> fn) override;

 private:
  struct Task {
    int64_t due_nanos;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Task& o) const {
      return due_nanos != o.due_nanos ? due_nanos > o.due_nanos : seq > o.seq;
    }
  };
  void Run();

  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Task, std::vector<Task>, std::greater<Task>> tasks_;  // GUARDED_BY(mu_)
  uint64_t next_seq_ = 0;                                                   // GUARDED_BY(mu_)
  bool stop_ = false;                                                       // GUARDED_BY(mu_)
  std::thread thread_;
};

// What happens to one message on a link.
struct LinkAction {
  bool drop = false;
  int64_t delay_nanos = 0;

  static LinkAction Deliver() { return {}; }
  static LinkAction Drop() { return {true, 0}; }
  static LinkAction Delay(int64_t nanos) { return {false, nanos}; }
};

// Decides the fate of each message from node `from` to node `to` (a
// request goes client -> server endpoint, its response server endpoint ->
// client). Called on arbitrary threads; must be thread-safe and must not
// call into the network.
using LinkPolicy = std::function<LinkAction(std::string_view from, std::string_view to)>;

namespace internal {
class InprocState;
}

// A set of in-process endpoints. Thread-safe. Handlers, responses and
// callbacks all run on the scheduler. Calls to an endpoint nobody listens
// on fail with Unavailable; calls whose request or response is dropped
// fail with Timeout at their deadline; calls in flight when the serving
// Server is destroyed fail with Unavailable.
class InProcessNetwork {
 public:
  // `scheduler` must stay usable while the network lives; the network keeps
  // a reference.
  explicit InProcessNetwork(
      std::shared_ptr<Scheduler> scheduler = std::make_shared<ThreadScheduler>());
  // Fails calls still pending with Cancelled, on the destroying thread;
  // later scheduled work becomes a no-op. Must not run on the scheduler's
  // thread.
  ~InProcessNetwork();

  InProcessNetwork(const InProcessNetwork&) = delete;
  InProcessNetwork& operator=(const InProcessNetwork&) = delete;

  // A transport for the node named `local_name`: its channels send from
  // that name (as seen by the link policy). Listen("name") serves "name";
  // an endpoint ending in ":0" gets a fresh unique number instead of 0, as
  // with TCP ports. Transports, channels and servers may outlive the
  // network; their calls then fail with Cancelled.
  std::unique_ptr<Transport> MakeTransport(std::string local_name);

  // Replaces the link policy; nullptr delivers everything at once.
  void SetLinkPolicy(LinkPolicy policy);

 private:
  std::shared_ptr<Scheduler> scheduler_;
  std::shared_ptr<internal::InprocState> state_;
};

}  // namespace tally::net
