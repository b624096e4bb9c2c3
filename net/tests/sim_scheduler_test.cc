#include "tally/net/sim_scheduler.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "test_util.h"

namespace tally::net {
namespace {

// Schedules `n` tasks at the same delay, each appending its index to `out`.
void ScheduleTies(SimScheduler& s, int n, int64_t delay, std::vector<int>* out) {
  for (int i = 0; i < n; ++i) s.Schedule(delay, [out, i] { out->push_back(i); });
}

std::vector<int> TieOrder(uint64_t seed, int n = 16) {
  SimScheduler s(SimSchedulerOptions{.seed = seed});
  std::vector<int> order;
  ScheduleTies(s, n, 1000, &order);
  s.RunUntilIdle();
  return order;
}

TEST(SimSchedulerTest, RunsInTimeOrderAndAdvancesTheClock) {
  SimScheduler s(SimSchedulerOptions{.seed = 7, .start_nanos = 1000});
  std::vector<std::pair<int, int64_t>> ran;
  for (int64_t d : {400, 100, 300, 0, 200}) {
    s.Schedule(d, [&ran, &s, d] { ran.emplace_back(static_cast<int>(d), s.now()); });
  }
  EXPECT_TRUE(ran.empty()) << "Schedule must never run a task";
  EXPECT_EQ(s.pending(), 5u);
  EXPECT_EQ(s.RunUntilIdle(), 5u);
  ASSERT_EQ(ran.size(), 5u);
  for (size_t i = 0; i < ran.size(); ++i) {
    EXPECT_EQ(ran[i].first, static_cast<int>(i) * 100);
    EXPECT_EQ(ran[i].second, 1000 + ran[i].first);  // ran at its due time
  }
  EXPECT_EQ(s.now(), 1400);
  EXPECT_FALSE(s.RunNext());
  EXPECT_EQ(s.executed(), 5u);
}

TEST(SimSchedulerTest, TasksScheduledByTasksRunLaterAndRespectMaxEvents) {
  SimScheduler s;
  int count = 0;
  std::function<void()> tick = [&] {
    ++count;
    s.Schedule(10, tick);
  };
  s.Schedule(0, tick);
  EXPECT_EQ(s.RunUntilIdle(100), 100u);
  EXPECT_EQ(count, 100);
  EXPECT_EQ(s.pending(), 1u);
  // Negative delays mean "now", never the past.
  const int64_t before = s.now();
  bool ran = false;
  s.Schedule(-50, [&] { ran = s.now() == before; });
  s.SetTaskObserver(nullptr);
  EXPECT_TRUE(s.RunNext());
  EXPECT_TRUE(ran);
}

TEST(SimSchedulerTest, SameSeedSameTieOrderDifferentSeedsDiffer) {
  const std::vector<int> a = TieOrder(1);
  EXPECT_EQ(a, TieOrder(1));
  std::vector<int> fifo(a.size());
  for (size_t i = 0; i < fifo.size(); ++i) fifo[i] = static_cast<int>(i);
  EXPECT_NE(a, fifo) << "equal-time tasks should be reordered by the seed";
  int differing = 0;
  for (uint64_t seed = 2; seed < 22; ++seed) differing += TieOrder(seed) != a ? 1 : 0;
  EXPECT_GE(differing, 19);
}

TEST(SimSchedulerTest, FifoTiesWhenReorderIsOff) {
  SimScheduler s(SimSchedulerOptions{.seed = 3, .reorder_ties = false});
  std::vector<int> order;
  ScheduleTies(s, 10, 5, &order);
  s.RunUntilIdle();
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
}

TEST(SimSchedulerTest, RunForAdvancesTheClockExactly) {
  SimScheduler s(SimSchedulerOptions{.start_nanos = 0});
  std::vector<int64_t> ran;
  for (int64_t d : {10, 20, 30, 40}) s.Schedule(d, [&ran, &s] { ran.push_back(s.now()); });
  // A task due inside the window, scheduled from inside the window, runs too.
  s.Schedule(5, [&] { s.Schedule(10, [&ran, &s] { ran.push_back(s.now()); }); });
  EXPECT_EQ(s.RunFor(std::chrono::nanoseconds(25)), 4u);
  EXPECT_EQ(ran, (std::vector<int64_t>{10, 15, 20}));
  EXPECT_EQ(s.now(), 25);
  EXPECT_EQ(s.RunFor(std::chrono::nanoseconds(0)), 0u);
  EXPECT_EQ(s.now(), 25);
  EXPECT_EQ(s.RunFor(std::chrono::nanoseconds(1000)), 2u);
  EXPECT_EQ(s.now(), 1025);
  EXPECT_EQ(s.clock()->NowNanos(), 1025);
  EXPECT_EQ(s.RunFor(std::chrono::nanoseconds(-5)), 0u);
  EXPECT_EQ(s.now(), 1025);
}

TEST(SimSchedulerTest, ObserverSeesEveryTask) {
  SimScheduler s(SimSchedulerOptions{.seed = 9, .start_nanos = 0});
  std::vector<std::pair<int64_t, uint64_t>> seen;
  s.SetTaskObserver([&](int64_t due, uint64_t seq) { seen.emplace_back(due, seq); });
  s.Schedule(20, [] {});
  s.Schedule(10, [] {});
  s.RunUntilIdle();
  EXPECT_EQ(seen, (std::vector<std::pair<int64_t, uint64_t>>{{10, 1}, {20, 0}}));
}

TEST(SimLinkPolicyTest, DelaysInRangeDeterministicAndDrops) {
  SimLinkOptions o{.min_delay_nanos = 100, .max_delay_nanos = 200, .drop_probability = 0.0};
  LinkPolicy a = MakeSeededLinkPolicy(5, o);
  LinkPolicy b = MakeSeededLinkPolicy(5, o);
  LinkPolicy c = MakeSeededLinkPolicy(6, o);
  bool differs = false;
  for (int i = 0; i < 200; ++i) {
    LinkAction x = a("p", "q");
    LinkAction y = b("p", "q");
    LinkAction z = c("p", "q");
    EXPECT_FALSE(x.drop);
    EXPECT_GE(x.delay_nanos, 100);
    EXPECT_LE(x.delay_nanos, 200);
    EXPECT_EQ(x.delay_nanos, y.delay_nanos);
    differs |= x.delay_nanos != z.delay_nanos;
  }
  EXPECT_TRUE(differs);

  LinkPolicy all = MakeSeededLinkPolicy(5, SimLinkOptions{.drop_probability = 1.0});
  LinkPolicy half = MakeSeededLinkPolicy(5, SimLinkOptions{.drop_probability = 0.5});
  int dropped = 0;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(all("p", "q").drop);
    dropped += half("p", "q").drop ? 1 : 0;
  }
  EXPECT_GT(dropped, 400);
  EXPECT_LT(dropped, 600);
}

// The in-process network runs on virtual time: a call's latency is the
// policy's delays, and the whole exchange is reproducible from the seed.
TEST(SimSchedulerTest, DrivesInProcessNetworkOnVirtualTime) {
  auto run = [](uint64_t seed) {
    auto sched = std::make_shared<SimScheduler>(SimSchedulerOptions{.seed = seed});
    std::vector<std::string> log;
    {
      InProcessNetwork network(sched);
      network.SetLinkPolicy(MakeSeededLinkPolicy(seed, SimLinkOptions{}));
      ServiceRegistry registry;
      testing::AddEcho(registry);
      auto server = network.MakeTransport("server")->Listen("srv", &registry);
      EXPECT_TRUE(server.ok());
      auto client = network.MakeTransport("client");
      auto channel = client->Connect("srv");
      const int64_t start = sched->now();
      for (int i = 0; i < 5; ++i) {
        channel->Call("echo.echo", std::to_string(i), CallOptions{},
                      [&log, &sched, start](Result<std::string> r) {
                        log.push_back((r.ok() ? *r : r.status().ToString()) + "@" +
                                      std::to_string(sched->now() - start));
                      });
      }
      EXPECT_TRUE(log.empty());
      sched->RunFor(std::chrono::milliseconds(10));
      EXPECT_EQ(log.size(), 5u);
    }
    sched->RunUntilIdle();  // the timeouts, now inert
    return log;
  };
  EXPECT_EQ(run(11), run(11));
  EXPECT_NE(run(11), run(12));
}

}  // namespace
}  // namespace tally::net
