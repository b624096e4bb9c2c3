#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <exception>

#include "tally/net/inproc_transport.h"

namespace tally::net {
namespace {

int64_t NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

ThreadScheduler::ThreadScheduler() : thread_([this] { Run(); }) {}

ThreadScheduler::~ThreadScheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void ThreadScheduler::Schedule(int64_t delay_nanos, std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    tasks_.push(Task{NowNanos() + std::max<int64_t>(delay_nanos, 0), next_seq_++, std::move(fn)});
  }
  cv_.notify_one();
}

void ThreadScheduler::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    if (tasks_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const int64_t wait = tasks_.top().due_nanos - NowNanos();
    if (wait > 0) {
      cv_.wait_for(lock, std::chrono::nanoseconds(wait));
      continue;
    }
    // top() is const; the element is popped right away, so moving from it is safe.
    std::function<void()> fn = std::move(const_cast<Task&>(tasks_.top()).fn);
    tasks_.pop();
    lock.unlock();
    try {
      fn();
    } catch (const std::exception& e) {
      spdlog::error("net: scheduled task threw: {}", e.what());
    }
    fn = nullptr;  // destroy captures outside the lock
    lock.lock();
  }
}

}  // namespace tally::net
