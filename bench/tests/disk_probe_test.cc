#include "disk_probe.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

namespace tally::bench {
namespace {

TEST(DiskProbeTest, AnIntervalOverlapsAStallOnlyIfTheyShareATime) {
  const std::vector<DiskProbe::Stall> stalls = {{1'000, 6'000}, {20'000, 50'000}};
  EXPECT_FALSE(DiskProbe::OverlapsAny({}, 0, 1e9));
  EXPECT_FALSE(DiskProbe::OverlapsAny(stalls, 0, 999));          // ends before the first
  EXPECT_TRUE(DiskProbe::OverlapsAny(stalls, 0, 1'000));         // touches its start
  EXPECT_TRUE(DiskProbe::OverlapsAny(stalls, 3'000, 4'000));     // inside it
  EXPECT_TRUE(DiskProbe::OverlapsAny(stalls, 6'500, 8'000));     // starts in its last µs
  EXPECT_FALSE(DiskProbe::OverlapsAny(stalls, 7'001, 19'999));   // between the two
  EXPECT_TRUE(DiskProbe::OverlapsAny(stalls, 60'000, 61'000));   // inside the second
  EXPECT_FALSE(DiskProbe::OverlapsAny(stalls, 70'001, 90'000));  // after both
}

TEST(DiskProbeTest, SyncsTheDiskOnItsTicksAndReportsTheLatencies) {
  const std::string dir = ::testing::TempDir() + "disk_probe_test_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/probe.dat";
  BenchResult r;
  {
    DiskProbe probe(path, std::chrono::milliseconds(2));
    ASSERT_TRUE(probe.ok());
    EXPECT_EQ(std::filesystem::file_size(path), 16u << 20);
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    probe.Stop();
    const double ran_ms = MicrosSince(probe.start()) / 1000;
    probe.Stop();  // idempotent
    const uint64_t syncs = probe.latencies().total();
    // Paced: at most one sync per 2 ms tick of the time it ran, and at
    // least the first.
    EXPECT_GE(syncs, 1u);
    EXPECT_LE(static_cast<double>(syncs), ran_ms / 2 + 1);
    EXPECT_GT(probe.max_us(), 0);
    EXPECT_LE(probe.latencies().Quantile(0.5), probe.max_us());
    for (const DiskProbe::Stall& s : probe.stalls()) EXPECT_GE(s.took_us, DiskProbe::kStallUs);
    probe.AddTo(r);
    EXPECT_EQ(r.extra.at("disk_probe_syncs"), static_cast<double>(syncs));
    EXPECT_EQ(r.extra.at("disk_probe_max_us"), probe.max_us());
    EXPECT_EQ(r.extra.at("disk_probe_stalls"), static_cast<double>(probe.stalls().size()));
  }
  EXPECT_FALSE(std::filesystem::exists(path)) << "the probe leaves its file behind";
  std::filesystem::remove_all(dir);
}

TEST(DiskProbeTest, AnUnusableDirectoryDisablesTheProbeAndReportsNothing) {
  DiskProbe probe("/nonexistent-dir-for-disk-probe/probe.dat", std::chrono::milliseconds(1));
  EXPECT_FALSE(probe.ok());
  BenchResult r;
  probe.AddTo(r);
  EXPECT_TRUE(r.extra.empty());
}

}  // namespace
}  // namespace tally::bench
