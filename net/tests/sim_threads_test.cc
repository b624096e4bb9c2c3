// SimThreads: cooperative threads over the simulation's virtual time. One
// thread of the simulation runs at a time, blocking calls hand control back
// to the scheduler, and one seed gives one interleaving.

#include "tally/net/sim_threads.h"

#include <gtest/gtest.h>

#include <mutex>
#include <set>
#include <string>
#include <vector>

namespace tally::net {
namespace {

std::shared_ptr<SimScheduler> MakeScheduler(uint64_t seed) {
  return std::make_shared<SimScheduler>(SimSchedulerOptions{.seed = seed});
}

TEST(SimThreadsTest, SleepsAdvanceVirtualTimeAndInterleaveByDueTime) {
  auto sched = MakeScheduler(1);
  SimThreads threads(sched);
  const int64_t t0 = sched->now();
  std::vector<std::string> events;  // only one simulated thread runs at a time
  auto a = threads.Start("a", [&] {
    for (int i = 0; i < 3; ++i) {
      threads.SleepNanos(10);
      events.push_back("a" + std::to_string(i) + "@" + std::to_string(sched->now() - t0));
    }
  });
  auto b = threads.Start("b", [&] {
    for (int i = 0; i < 2; ++i) {
      threads.SleepNanos(15);
      events.push_back("b" + std::to_string(i) + "@" + std::to_string(sched->now() - t0));
    }
  });
  a->Join();
  b->Join();
  // a2 and b1 are both due at 30: their order is the seed's choice.
  const std::vector<std::string> x{"a0@10", "b0@15", "a1@20", "a2@30", "b1@30"};
  const std::vector<std::string> y{"a0@10", "b0@15", "a1@20", "b1@30", "a2@30"};
  EXPECT_TRUE(events == x || events == y) << ::testing::PrintToString(events);
  EXPECT_EQ(threads.live(), 0u);
}

TEST(SimThreadsTest, WaitReturnsAfterWakeFromATaskAndSeesItsWrites) {
  auto sched = MakeScheduler(2);
  SimThreads threads(sched);
  int value = 0;
  int64_t woke_at = 0;
  auto t = threads.Start("waiter", [&] {
    threads.Wait([&](Threads::Wake wake) {
      sched->Schedule(1'000, [&value, wake] {
        value = 42;
        wake();
        wake();  // a second call is ignored
      });
    });
    woke_at = sched->now();
  });
  const int64_t start = sched->now();
  t->Join();
  EXPECT_EQ(value, 42);
  EXPECT_EQ(woke_at - start, 1'000);
}

TEST(SimThreadsTest, WakeInsideStartDoesNotBlock) {
  auto sched = MakeScheduler(3);
  SimThreads threads(sched);
  bool after = false;
  auto t = threads.Start("w", [&] {
    threads.Wait([](Threads::Wake wake) { wake(); });
    after = true;
  });
  t->Join();
  EXPECT_TRUE(after);
}

TEST(SimThreadsTest, MainThreadWaitRunsTheSimulation) {
  auto sched = MakeScheduler(4);
  SimThreads threads(sched);
  const int64_t start = sched->now();
  int got = WaitForValue<int>(
      threads, [&](std::function<void(int)> done) { sched->Schedule(5'000, [done] { done(7); }); });
  EXPECT_EQ(got, 7);
  EXPECT_EQ(sched->now() - start, 5'000);
  threads.SleepNanos(100);
  EXPECT_EQ(sched->now() - start, 5'100);
}

TEST(SimThreadsTest, JoinFromAnotherSimulatedThread) {
  auto sched = MakeScheduler(5);
  SimThreads threads(sched);
  std::vector<std::string> order;
  std::unique_ptr<ThreadHandle> worker = threads.Start("worker", [&] {
    threads.SleepNanos(100);
    order.push_back("worker done");
  });
  auto joiner = threads.Start("joiner", [&] {
    worker->Join();
    order.push_back("joined at " + std::to_string(sched->now()));
  });
  const int64_t start = sched->now();
  joiner->Join();
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], "worker done");
  EXPECT_EQ(order[1], "joined at " + std::to_string(start + 100));
}

// Threads woken at the same virtual time run in a seed-drawn order; the
// same seed gives the same order every time.
std::string RaceOrder(uint64_t seed) {
  auto sched = MakeScheduler(seed);
  SimThreads threads(sched);
  std::string order;
  std::vector<std::unique_ptr<ThreadHandle>> hs;
  for (char c = 'a'; c <= 'f'; ++c) {
    hs.push_back(threads.Start(std::string(1, c), [&order, &threads, c] {
      threads.SleepNanos(50);
      order.push_back(c);
    }));
  }
  for (auto& h : hs) h->Join();
  return order;
}

TEST(SimThreadsTest, SameSeedSameInterleavingOthersDiffer) {
  std::set<std::string> seen;
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    const std::string first = RaceOrder(seed);
    EXPECT_EQ(first, RaceOrder(seed)) << "seed " << seed;
    seen.insert(first);
  }
  EXPECT_GT(seen.size(), 10u);
}

TEST(SimThreadsTest, ThreadsLeftBlockedAreReportedNotHung) {
  auto sched = MakeScheduler(6);
  auto threads = std::make_unique<SimThreads>(sched);
  auto h = threads->Start("stuck", [&] {
    threads->Wait([](Threads::Wake) {});  // never woken
  });
  sched->RunUntilIdle();
  EXPECT_EQ(threads->live(), 1u);
  EXPECT_EQ(threads->LiveNames(), "stuck");
  h.reset();        // never joined: the thread stays blocked
  threads.reset();  // detaches it instead of hanging
}

}  // namespace
}  // namespace tally::net
