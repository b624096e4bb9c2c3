#pragma once

// The raw disk's own sync latency while a benchmark row runs: one thread
// writes 4 KiB and fdatasyncs it every `period` on a file of its own on the
// disk under test. The file is preallocated and zeroed first, so each sync
// flushes data and the device cache only (no journal commit), as a log
// unit's zero-ahead segment does. A slow append that lived through a slow
// probe sync waited on the device; one that did not, waited on Tally.
//
// This VM's disk stalls now and then: the probe has seen 50-190 ms syncs,
// on every file of the disk at once, with nothing else running. No durable
// store answers within 5 ms through such a stall, so a paced row reports
// the probe next to its latencies.

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bench_util.h"

namespace tally::bench {

class DiskProbe {
 public:
  // A sync at least this slow is a stall.
  static constexpr double kStallUs = 5000;

  struct Stall {
    double start_us;  // since the probe's start
    double took_us;
  };

  // Creates and zeroes `path` (16 MiB; the probe writes it round robin)
  // and starts the probe thread. An error (no space, a read-only disk)
  // disables the probe with a message on stderr; the row still runs.
  DiskProbe(std::string path, std::chrono::microseconds period);
  // Stops the thread if running; removes the file.
  ~DiskProbe();
  DiskProbe(const DiskProbe&) = delete;
  DiskProbe& operator=(const DiskProbe&) = delete;

  // Stops the probe. Idempotent.
  void Stop();

  bool ok() const { return fd_ >= 0; }
  BenchClock::time_point start() const { return start_; }
  // After Stop(): the syncs' latencies and the stalls among them, in order.
  LatencyRecorder& latencies() { return latencies_; }
  const std::vector<Stall>& stalls() const { return stalls_; }
  double max_us() const { return max_us_; }

  // True if [from_us, to_us] (since start()) overlaps a stall.
  bool OverlapsStall(double from_us, double to_us) const {
    return OverlapsAny(stalls_, from_us, to_us);
  }
  // True if [from_us, to_us] overlaps one of `stalls` (ordered by start).
  static bool OverlapsAny(const std::vector<Stall>& stalls, double from_us, double to_us);

  // Adds disk_probe_{syncs,p50_us,p99_us,max_us,stalls,stalled_ms} to `r`.
  void AddTo(BenchResult& r);

 private:
  void Run(std::chrono::microseconds period);

  const std::string path_;
  int fd_ = -1;
  BenchClock::time_point start_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  // Written by the probe thread; read after Stop().
  LatencyRecorder latencies_;
  std::vector<Stall> stalls_;
  double max_us_ = 0;
};

}  // namespace tally::bench
