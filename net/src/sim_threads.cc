#include "tally/net/sim_threads.h"

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace tally::net {

struct SimThreads::SimThread {
  std::string name;
  std::condition_variable cv;  // signalled when the baton comes to this thread
  std::thread thread;
  bool done = false;          // GUARDED_BY(State::mu)
  bool joined = false;        // GUARDED_BY(State::mu)
  std::vector<Wake> joiners;  // GUARDED_BY(State::mu)
};

struct SimThreads::State {
  std::mutex mu;
  std::condition_variable scheduler_cv;  // signalled when the baton returns to the scheduler
  // The baton: the simulated thread allowed to run; nullptr while the
  // scheduler's thread runs.
  SimThread* running = nullptr;                 // GUARDED_BY(mu)
  std::vector<std::unique_ptr<SimThread>> all;  // GUARDED_BY(mu)
};

namespace {

thread_local SimThreads::SimThread* tls_current = nullptr;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "SimThreads: %s\n", what.c_str());
  std::abort();
}

// Scheduler thread, inside a task: hands the baton to `t` and waits until
// it blocks again or returns.
void Resume(SimThreads::State& s, SimThreads::SimThread* t) {
  std::unique_lock lock(s.mu);
  if (t->done) return;
  s.running = t;
  t->cv.notify_one();
  s.scheduler_cv.wait(lock, [&] { return s.running == nullptr; });
}

// Simulated thread `t`: gives the baton back and waits to be resumed.
void Yield(SimThreads::State& s, SimThreads::SimThread* t) {
  std::unique_lock lock(s.mu);
  s.running = nullptr;
  s.scheduler_cv.notify_one();
  t->cv.wait(lock, [&] { return s.running == t; });
}

class SimThreadHandle final : public ThreadHandle {
 public:
  SimThreadHandle(SimThreads* owner, std::shared_ptr<SimThreads::State> state,
                  SimThreads::SimThread* thread)
      : owner_(owner), state_(std::move(state)), thread_(thread) {}

  void Join() override {
    if (tls_current == thread_) Die("thread '" + thread_->name + "' joins itself");
    owner_->Wait([&](Threads::Wake wake) {
      std::unique_lock lock(state_->mu);
      if (thread_->done) {
        lock.unlock();
        wake();
      } else {
        thread_->joiners.push_back(std::move(wake));
      }
    });
    std::unique_lock lock(state_->mu);
    if (!thread_->joined) {
      thread_->joined = true;
      lock.unlock();
      thread_->thread.join();
    }
  }

 private:
  SimThreads* owner_;
  std::shared_ptr<SimThreads::State> state_;
  SimThreads::SimThread* thread_;
};

}  // namespace

SimThreads::SimThreads(std::shared_ptr<SimScheduler> scheduler)
    : scheduler_(std::move(scheduler)), state_(std::make_shared<State>()) {}

SimThreads::~SimThreads() {
  for (uint64_t n = 0; live() > 0 && n < kDrainEvents; ++n) {
    if (!scheduler_->RunNext()) break;
  }
  std::lock_guard lock(state_->mu);
  std::string stuck;
  for (auto& t : state_->all) {
    if (t->joined) continue;
    if (t->done) {
      t->thread.join();
    } else {
      stuck += (stuck.empty() ? "" : ", ") + t->name;
      t->thread.detach();  // blocked for good; the State it waits on is kept alive by it
    }
  }
  if (!stuck.empty()) {
    std::fprintf(stderr, "SimThreads: threads still blocked at teardown, left detached: %s\n",
                 stuck.c_str());
  }
}

std::unique_ptr<ThreadHandle> SimThreads::Start(std::string name, std::function<void()> fn) {
  auto owned = std::make_unique<SimThread>();
  SimThread* t = owned.get();
  t->name = std::move(name);
  {
    std::lock_guard lock(state_->mu);
    state_->all.push_back(std::move(owned));
  }
  std::shared_ptr<State> s = state_;
  t->thread = std::thread([s, t, fn = std::move(fn)] {
    {
      std::unique_lock lock(s->mu);
      t->cv.wait(lock, [&] { return s->running == t; });
    }
    tls_current = t;
    fn();
    tls_current = nullptr;
    std::vector<Wake> joiners;
    {
      std::lock_guard lock(s->mu);
      t->done = true;
      joiners.swap(t->joiners);
    }
    for (auto& w : joiners) w();
    std::lock_guard lock(s->mu);
    s->running = nullptr;
    s->scheduler_cv.notify_one();
  });
  scheduler_->Schedule(0, [s, t] { Resume(*s, t); });
  return std::make_unique<SimThreadHandle>(this, state_, t);
}

void SimThreads::Wait(const std::function<void(Wake)>& start) {
  SimThread* self = tls_current;
  auto fired = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<State> s = state_;
  std::shared_ptr<SimScheduler> sched = scheduler_;
  start([fired, s, sched, self] {
    if (fired->exchange(true)) return;
    if (self != nullptr) sched->Schedule(0, [s, self] { Resume(*s, self); });
  });
  if (self != nullptr) {
    Yield(*state_, self);
    return;
  }
  // The scheduler's thread: run the simulation until woken.
  while (!fired->load()) {
    if (!scheduler_->RunNext()) {
      Die("Wait on the scheduler's thread, but nothing is left to run (deadlock); blocked: " +
          LiveNames());
    }
  }
}

void SimThreads::SleepNanos(int64_t nanos) {
  SimThread* self = tls_current;
  if (self == nullptr) {
    scheduler_->RunFor(std::chrono::nanoseconds(std::max<int64_t>(nanos, 0)));
    return;
  }
  std::shared_ptr<State> s = state_;
  scheduler_->Schedule(std::max<int64_t>(nanos, 0), [s, self] { Resume(*s, self); });
  Yield(*state_, self);
}

size_t SimThreads::live() const {
  std::lock_guard lock(state_->mu);
  size_t n = 0;
  for (const auto& t : state_->all) n += t->done ? 0 : 1;
  return n;
}

std::string SimThreads::LiveNames() const {
  std::lock_guard lock(state_->mu);
  std::string out;
  for (const auto& t : state_->all) {
    if (!t->done) out += (out.empty() ? "" : ", ") + t->name;
  }
  return out;
}

}  // namespace tally::net
