#pragma once

// The threading seam of code that blocks (the client runtime): how it starts
// threads, waits for a callback and sleeps. SystemThreads() uses real
// threads, condition variables and the OS clock; a simulation plugs in
// cooperative threads over virtual time (net::SimThreads), so the same
// blocking code runs deterministically from one seed. Code behind this seam
// must block only through it (never std::future::get, condition_variable
// waits across a callback, or std::this_thread::sleep_for), and must not
// hold a mutex while it blocks.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace tally {

// A started thread. Join() waits until its function returned; it must be
// called exactly once, before the handle is destroyed, and never from the
// thread itself.
class ThreadHandle {
 public:
  virtual ~ThreadHandle() = default;
  virtual void Join() = 0;
};

class Threads {
 public:
  // Ends a Wait. Copyable; may be called from any thread, any number of
  // times (only the first call counts), also from inside Wait's `start`.
  using Wake = std::function<void()>;

  virtual ~Threads() = default;

  // Runs `fn` on a new thread. `name` is for diagnostics.
  virtual std::unique_ptr<ThreadHandle> Start(std::string name, std::function<void()> fn) = 0;

  // Calls `start(wake)` on the calling thread, then blocks until `wake` has
  // been called. Everything `wake`'s caller wrote before calling it is
  // visible to the caller of Wait when it returns.
  virtual void Wait(const std::function<void(Wake)>& start) = 0;

  // Blocks the calling thread for `nanos` (<= 0: returns at once).
  virtual void SleepNanos(int64_t nanos) = 0;
};

// Real threads. Thread-safe; lives for the whole process.
Threads* SystemThreads();

// Blocks until `start`'s callback delivers a value, and returns it. The
// callback must be called exactly once.
template <typename T>
T WaitForValue(Threads& threads, const std::function<void(std::function<void(T)>)>& start) {
  std::shared_ptr<T> out;
  threads.Wait([&](Threads::Wake wake) {
    start([&out, wake = std::move(wake)](T value) {
      out = std::make_shared<T>(std::move(value));
      wake();
    });
  });
  return std::move(*out);
}

}  // namespace tally
