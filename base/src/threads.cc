#include "tally/base/threads.h"

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace tally {

namespace {

class SystemThreadHandle final : public ThreadHandle {
 public:
  explicit SystemThreadHandle(std::thread thread) : thread_(std::move(thread)) {}
  ~SystemThreadHandle() override {
    // Join() is part of the contract; joining here keeps a forgotten call
    // from terminating the process.
    if (thread_.joinable()) thread_.join();
  }
  void Join() override { thread_.join(); }

 private:
  std::thread thread_;
};

// One Wait's rendezvous; shared with the Wake, which may outlive the Wait.
struct WaitState {
  std::mutex mu;
  std::condition_variable cv;
  bool woken = false;  // GUARDED_BY(mu)
};

class SystemThreadsImpl final : public Threads {
 public:
  std::unique_ptr<ThreadHandle> Start(std::string /*name*/, std::function<void()> fn) override {
    return std::make_unique<SystemThreadHandle>(std::thread(std::move(fn)));
  }

  void Wait(const std::function<void(Wake)>& start) override {
    auto state = std::make_shared<WaitState>();
    start([state] {
      std::lock_guard lock(state->mu);
      state->woken = true;
      state->cv.notify_all();
    });
    std::unique_lock lock(state->mu);
    state->cv.wait(lock, [&] { return state->woken; });
  }

  void SleepNanos(int64_t nanos) override {
    if (nanos > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(nanos));
  }
};

}  // namespace

Threads* SystemThreads() {
  static SystemThreadsImpl* const threads = new SystemThreadsImpl();
  return threads;
}

}  // namespace tally
