#include "tally/net/sim_scheduler.h"

#include <algorithm>
#include <cassert>
#include <memory>

namespace tally::net {

SimScheduler::SimScheduler(SimSchedulerOptions options)
    : reorder_ties_(options.reorder_ties), clock_(options.start_nanos), random_(options.seed) {}

SimScheduler::~SimScheduler() = default;

void SimScheduler::Schedule(int64_t delay_nanos, std::function<void()> fn) {
  const int64_t due = clock_.NowNanos() + std::max<int64_t>(delay_nanos, 0);
  std::lock_guard<std::mutex> lock(mu_);
  // Drawn under mu_ so that the draw order is the scheduling order.
  const uint64_t tie = reorder_ties_ ? random_.Next() : 0;
  tasks_.push(Task{due, tie, next_seq_++, std::move(fn)});
}

size_t SimScheduler::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return tasks_.size();
}

void SimScheduler::SetTaskObserver(std::function<void(int64_t, uint64_t)> observer) {
  assert(!running_ && "SetTaskObserver called from inside a task");
  observer_ = std::move(observer);
}

void SimScheduler::CheckRunner() {
  assert(!running_ && "SimScheduler run methods must not be called from inside a task");
#ifndef NDEBUG
  if (runner_ == std::thread::id()) runner_ = std::this_thread::get_id();
  assert(runner_ == std::this_thread::get_id() &&
         "SimScheduler run methods must all be called from one thread");
#endif
}

bool SimScheduler::PopDue(int64_t limit, Task* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (tasks_.empty() || tasks_.top().due_nanos > limit) return false;
  // top() is const; the element is popped right away, so moving from it is safe.
  *out = std::move(const_cast<Task&>(tasks_.top()));
  tasks_.pop();
  return true;
}

void SimScheduler::RunTask(Task task) {
  if (task.due_nanos > clock_.NowNanos()) clock_.Set(task.due_nanos);
  if (observer_) observer_(task.due_nanos, task.seq);
  ++executed_;
  running_ = true;
  struct Reset {
    bool* flag;
    ~Reset() { *flag = false; }
  } reset{&running_};
  task.fn();
}

bool SimScheduler::RunNext() {
  CheckRunner();
  Task task;
  if (!PopDue(INT64_MAX, &task)) return false;
  RunTask(std::move(task));
  return true;
}

uint64_t SimScheduler::RunUntilIdle(uint64_t max_events) {
  CheckRunner();
  uint64_t n = 0;
  Task task;
  while (n < max_events && PopDue(INT64_MAX, &task)) {
    RunTask(std::move(task));
    ++n;
  }
  return n;
}

uint64_t SimScheduler::RunFor(std::chrono::nanoseconds duration) {
  CheckRunner();
  const int64_t end = clock_.NowNanos() + std::max<int64_t>(duration.count(), 0);
  uint64_t n = 0;
  Task task;
  while (PopDue(end, &task)) {
    RunTask(std::move(task));
    ++n;
  }
  clock_.Set(end);
  return n;
}

LinkPolicy MakeSeededLinkPolicy(uint64_t seed, SimLinkOptions options) {
  auto random = std::make_shared<SeededRandom>(seed);
  const int64_t lo = std::max<int64_t>(options.min_delay_nanos, 0);
  const int64_t hi = std::max(lo, options.max_delay_nanos);
  // Drop threshold on a 53-bit uniform draw.
  constexpr uint64_t kScale = uint64_t{1} << 53;
  const double p = std::clamp(options.drop_probability, 0.0, 1.0);
  const uint64_t drop_below = static_cast<uint64_t>(p * static_cast<double>(kScale));
  return [random, lo, hi, drop_below](std::string_view, std::string_view) {
    if (drop_below > 0 && (random->Next() >> 11) < drop_below) return LinkAction::Drop();
    const uint64_t span = static_cast<uint64_t>(hi - lo) + 1;
    return LinkAction::Delay(lo + static_cast<int64_t>(random->Uniform(span)));
  };
}

}  // namespace tally::net
