#pragma once

// A pipelined log.write_batch load on one log unit, as a real client would
// drive it: `depth` RPCs of `batch` entries in flight, each answer issuing
// the next. Used by log_bench (rpc_append_64B) and append_bench (the
// unreplicated baseline).

#include <atomic>
#include <cstdint>
#include <string>

#include "bench_util.h"
#include "tally/net/transport.h"

namespace tally::bench {

class WriteBatchPipeline {
 public:
  // Writes `payload` at addresses from `first_address` up. `channel` must
  // outlive this object. Any failed RPC or entry ends the process with a
  // message (a benchmark must not count failures as throughput).
  WriteBatchPipeline(net::Channel& channel, std::string payload, int batch, int depth,
                     uint64_t first_address);
  // Stop() if still running.
  ~WriteBatchPipeline();

  // Issues the first `depth` RPCs.
  void Start();
  // Acknowledged entries and their latencies are counted only while measuring.
  void SetMeasuring(bool on) { measuring_ = on; }
  // Issues nothing more and waits until every RPC in flight has answered.
  void Stop();

  uint64_t acked() const { return acked_.load(); }
  LatencyRecorder& latencies() { return latencies_; }

 private:
  void Issue();

  net::Channel& channel_;
  const std::string payload_;
  const int batch_;
  const int depth_;
  std::atomic<uint64_t> next_address_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> measuring_{false};
  std::atomic<uint64_t> acked_{0};
  std::atomic<int> outstanding_{0};
  LatencyRecorder latencies_;
};

}  // namespace tally::bench
