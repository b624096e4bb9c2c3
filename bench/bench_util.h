#pragma once

// Shared pieces of Tally's benchmarks: latency recording, result rows, and
// the --json output format every benchmark prints:
//   [{"name": ..., "ops_per_sec": ..., "mb_per_sec": ..., "p50_us": ...,
//     "p99_us": ..., <extra numeric fields>}, ...]

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace tally::bench {

using BenchClock = std::chrono::steady_clock;

inline double MicrosBetween(BenchClock::time_point from, BenchClock::time_point to) {
  return std::chrono::duration<double, std::micro>(to - from).count();
}

inline double MicrosSince(BenchClock::time_point t) { return MicrosBetween(t, BenchClock::now()); }

// Collects per-operation latencies (microseconds) from many threads.
class LatencyRecorder {
 public:
  // Records `count` operations that each took `us` (a batch acknowledged at once).
  void Record(double us, uint64_t count = 1) {
    std::lock_guard lock(mu_);
    samples_.push_back({us, count});
    total_ += count;
  }
  uint64_t total() {
    std::lock_guard lock(mu_);
    return total_;
  }
  // The q-quantile (0..1) of operation latency, weighting each sample by its count.
  double Quantile(double q) {
    std::lock_guard lock(mu_);
    if (samples_.empty()) return 0;
    std::sort(samples_.begin(), samples_.end());
    uint64_t target = static_cast<uint64_t>(q * static_cast<double>(total_));
    uint64_t seen = 0;
    for (const auto& [us, n] : samples_) {
      seen += n;
      if (seen > target) return us;
    }
    return samples_.back().first;
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<double, uint64_t>> samples_;
  uint64_t total_ = 0;
};

struct BenchResult {
  std::string name;
  double ops_per_sec = 0;
  double mb_per_sec = 0;
  double p50_us = 0;
  double p99_us = 0;
  std::map<std::string, double> extra;  // e.g. batch size, ratio to baseline
};

// Fills rate and latency fields from `ops` operations of `bytes_per_op`
// done in `seconds`.
BenchResult MakeResult(std::string name, uint64_t ops, uint64_t bytes_per_op, double seconds,
                       LatencyRecorder& latencies);

// Prints results as the JSON array above (json) or as an aligned table.
void PrintResults(const std::vector<BenchResult>& results, bool json);

// Claims the scratch directory `dir` for this process: an exclusive flock
// on `<dir>.lock` (created, with dir's parents, if missing; it holds the
// owner's pid), held until the process exits, which removes the file
// (after a crash it stays, unlocked, and the next claim takes it). Two benchmarks sharing a
// scratch directory wipe each other's clusters and data. Returns an empty
// string, or why the claim failed: another live process holds it (named by
// pid), or the lock file cannot be made.
std::string ClaimScratchDir(const std::string& dir);

}  // namespace tally::bench
