// log_bench: durable append throughput of the log unit, next to the raw disk.
//
//   storage_append_64B   the segment store in process, every append durable
//   storage_append_4KiB  the same with 4 KiB payloads
//   raw_fdatasync_4KiB   the physical baseline: sequential 4 KiB writes +
//                        fdatasync, batched like the store's group commits
//   rpc_append_64B       a log unit over loopback TCP, pipelined batches
//   storage_3x_paced_64B three segment stores on the same disk (as three
//                        log units of a local cluster), each sent 80-record
//                        batches at 1,250/s (100,000 appends/s, the append
//                        target's half load); latency per batch from its
//                        scheduled time. Its baseline row
//                        storage_3x_paced_64B_no_zero_ahead runs the same
//                        with zero-ahead off (zero_ahead_bytes = 0), and
//                        storage_3x_paced_64B_io_uring with the io_uring
//                        write engine instead of the default sync one
//
// Usage: log_bench [--json] [--seconds S] [--dir DIR] [--only NAME]

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <semaphore>
#include <thread>

#include "bench_util.h"
#include "tally/base/posix_env.h"
#include "tally/log/log_unit.h"
#include "tally/log/segment_store.h"
#include "tally/net/tcp_transport.h"
#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"
#include "write_batch_pipeline.h"

namespace tally::bench {
namespace {

struct Config {
  double seconds = 3;
  std::string dir = "/var/tmp/tally-log-bench";
  int threads = 4;  // submitting threads (storage)
  int batch = 256;  // records per Append / per RPC
  int depth = 2;    // batches in flight per thread / RPCs in flight = depth * threads
};

[[noreturn]] void Die(const std::string& what, const Status& st) {
  std::fprintf(stderr, "log_bench: %s: %s\n", what.c_str(), st.ToString().c_str());
  std::exit(1);
}

std::string FreshDir(const Config& c, const std::string& name) {
  std::string d = c.dir + "/" + name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

BenchResult RunStorage(const Config& c, const std::string& name, size_t payload_bytes) {
  log::SegmentStoreOptions opts;
  opts.dir = FreshDir(c, name);
  auto store = log::SegmentStore::Open(opts);
  if (!store.ok()) Die("open store", store.status());
  const std::string payload(payload_bytes, 'x');
  std::atomic<uint64_t> next_address{0};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> acked{0};
  LatencyRecorder lat;

  auto worker = [&]() {
    std::counting_semaphore<64> slots(c.depth);
    std::atomic<int> outstanding{0};
    while (!stop.load(std::memory_order_relaxed)) {
      slots.acquire();
      std::vector<log::Record> records(c.batch);
      uint64_t base = next_address.fetch_add(c.batch);
      for (int i = 0; i < c.batch; ++i) {
        records[i].address = Address(base + i);
        records[i].epoch = Epoch(0);
        records[i].payload = payload;
      }
      auto t0 = BenchClock::now();
      outstanding++;
      (*store)->Append(std::move(records), [&, t0](std::vector<Status> results) {
        for (const auto& st : results) {
          if (!st.ok()) Die("append", st);
        }
        lat.Record(MicrosSince(t0), results.size());
        acked.fetch_add(results.size());
        outstanding--;
        slots.release();
      });
    }
    while (outstanding.load() > 0) std::this_thread::yield();
  };

  auto start = BenchClock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < c.threads; ++t) threads.emplace_back(worker);
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(BenchClock::now() - start).count();
  BenchResult r = MakeResult(name, acked.load(), payload_bytes, secs, lat);
  r.extra["records_in_flight"] = c.threads * c.depth * c.batch;
  return r;
}

// Sequential 4 KiB writes, `batch` of them per fdatasync, on the same disk.
BenchResult RunRawFdatasync(const Config& c, size_t block, int batch) {
  std::string dir = FreshDir(c, "raw");
  std::string path = dir + "/raw.dat";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) Die("open " + path, ErrnoStatus("open", errno));
  std::string buf(block, 'x');
  std::vector<iovec> iov(std::min(batch, IOV_MAX));
  for (auto& v : iov) v = {buf.data(), block};
  LatencyRecorder lat;
  uint64_t ops = 0;
  off_t offset = 0;
  auto start = BenchClock::now();
  auto deadline = start + std::chrono::duration<double>(c.seconds);
  while (BenchClock::now() < deadline) {
    auto t0 = BenchClock::now();
    for (int done = 0; done < batch;) {
      int n = std::min<int>(batch - done, static_cast<int>(iov.size()));
      ssize_t w = ::pwritev(fd, iov.data(), n, offset);
      if (w != static_cast<ssize_t>(n * block)) Die("pwritev", ErrnoStatus("pwritev", errno));
      offset += w;
      done += n;
    }
    if (::fdatasync(fd) != 0) Die("fdatasync", ErrnoStatus("fdatasync", errno));
    lat.Record(MicrosSince(t0), batch);
    ops += batch;
  }
  double secs = std::chrono::duration<double>(BenchClock::now() - start).count();
  ::close(fd);
  BenchResult r = MakeResult("raw_fdatasync_4KiB", ops, block, secs, lat);
  r.extra["batch"] = batch;
  return r;
}

// Three stores, one paced submitter each: a batch of `kBatch` 64-byte
// records every 1/kBatchesPerSec s, stamped with its scheduled time.
BenchResult RunPacedStores(const Config& c, const std::string& name, bool zero_ahead,
                           WriteEngine engine = WriteEngine::kSync) {
  constexpr int kStores = 3;
  constexpr int kBatch = 80;
  constexpr double kBatchesPerSec = 1250;
  const std::string payload(64, 'x');
  PosixFileSystem fs(engine);  // outlives the stores
  std::vector<std::unique_ptr<log::SegmentStore>> stores;
  for (int i = 0; i < kStores; ++i) {
    log::SegmentStoreOptions opts;
    opts.dir = FreshDir(c, name + "-" + std::to_string(i));
    opts.env = DefaultEnv();
    opts.env.fs = &fs;
    if (!zero_ahead) opts.zero_ahead_bytes = 0;
    auto store = log::SegmentStore::Open(opts);
    if (!store.ok()) Die("open store", store.status());
    stores.push_back(std::move(*store));
  }
  LatencyRecorder lat;
  std::atomic<uint64_t> acked{0};
  const auto start = BenchClock::now();
  const auto end = start + std::chrono::duration<double>(c.seconds);
  const std::chrono::duration<double> gap(1.0 / kBatchesPerSec);
  auto feed = [&](log::SegmentStore* store) {
    std::atomic<int> outstanding{0};
    for (uint64_t k = 0;; ++k) {
      const auto due = start + std::chrono::duration_cast<BenchClock::duration>(gap * k);
      if (due >= end) break;
      std::this_thread::sleep_until(due);
      std::vector<log::Record> records(kBatch);
      for (int i = 0; i < kBatch; ++i) {
        records[i].address = Address(k * kBatch + i);
        records[i].epoch = Epoch(0);
        records[i].payload = payload;
      }
      outstanding++;
      store->Append(std::move(records), [&, due](std::vector<Status> results) {
        for (const auto& st : results) {
          if (!st.ok()) Die("append", st);
        }
        lat.Record(MicrosSince(due), results.size());
        acked.fetch_add(results.size());
        outstanding--;
      });
    }
    while (outstanding.load() > 0) std::this_thread::yield();
  };
  std::vector<std::thread> threads;
  for (auto& s : stores) threads.emplace_back(feed, s.get());
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(BenchClock::now() - start).count();
  BenchResult r = MakeResult(name, acked.load(), payload.size(), secs, lat);
  r.extra["stores"] = kStores;
  r.extra["records_per_batch"] = kBatch;
  r.extra["batches_per_sec_per_store"] = kBatchesPerSec;
  r.extra["zero_ahead"] = zero_ahead ? 1 : 0;
  r.extra["io_uring"] = engine == WriteEngine::kIoUring ? 1 : 0;
  return r;
}

BenchResult RunRpc(const Config& c, size_t payload_bytes) {
  log::LogUnitOptions lu;
  lu.store.dir = FreshDir(c, "rpc");
  auto unit = log::LogUnit::Open(lu);
  if (!unit.ok()) Die("open log unit", unit.status());
  net::ServiceRegistry registry;
  (*unit)->Register(registry);
  net::TcpOptions server_opts;
  server_opts.io_threads = 1;
  net::TcpTransport server_transport(server_opts);
  auto server = server_transport.Listen("127.0.0.1:0", &registry);
  if (!server.ok()) Die("listen", server.status());
  net::TcpTransport client_transport;
  auto channel = client_transport.Connect((*server)->endpoint());

  WriteBatchPipeline load(*channel, std::string(payload_bytes, 'x'), c.batch, c.threads * c.depth,
                          /*first_address=*/0);
  load.SetMeasuring(true);
  auto start = BenchClock::now();
  load.Start();
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  load.SetMeasuring(false);
  double secs = std::chrono::duration<double>(BenchClock::now() - start).count();
  load.Stop();
  BenchResult r = MakeResult("rpc_append_64B", load.acked(), payload_bytes, secs, load.latencies());
  r.extra["rpcs_in_flight"] = c.threads * c.depth;
  r.extra["entries_per_rpc"] = c.batch;
  return r;
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) {
  using namespace tally::bench;
  Config c;
  bool json = false;
  std::string only;
  CLI::App app{"log_bench: durable append throughput of the Tally log unit vs. the raw disk"};
  app.add_flag("--json", json, "print a JSON array of results");
  app.add_option("--seconds", c.seconds, "duration of each benchmark")->capture_default_str();
  app.add_option("--dir", c.dir, "scratch directory (on the disk to measure)")
      ->capture_default_str();
  app.add_option("--threads", c.threads, "submitting threads")->capture_default_str();
  app.add_option("--batch", c.batch, "records per append call / per RPC")->capture_default_str();
  app.add_option("--depth", c.depth, "batches in flight per thread")->capture_default_str();
  app.add_option("--only", only, "run only the benchmark with this name");
  CLI11_PARSE(app, argc, argv);
  if (std::string busy = ClaimScratchDir(c.dir); !busy.empty()) {
    std::fprintf(stderr, "log_bench: %s\n", busy.c_str());
    return 1;
  }
  if (c.depth < 1 || c.depth > 64 || c.threads < 1 || c.batch < 1) {
    std::fprintf(stderr, "log_bench: --depth must be 1..64, --threads and --batch >= 1\n");
    return 2;
  }

  std::vector<BenchResult> results;
  auto want = [&](const char* name) { return only.empty() || only == name; };
  if (want("storage_append_64B")) results.push_back(RunStorage(c, "storage_append_64B", 64));
  if (want("storage_3x_paced_64B")) {
    results.push_back(RunPacedStores(c, "storage_3x_paced_64B_no_zero_ahead", false));
    results.push_back(
        RunPacedStores(c, "storage_3x_paced_64B_io_uring", true, tally::WriteEngine::kIoUring));
    results.push_back(RunPacedStores(c, "storage_3x_paced_64B", true));
  }
  std::optional<BenchResult> s4k;
  if (want("storage_append_4KiB")) {
    s4k = RunStorage(c, "storage_append_4KiB", 4096);
    results.push_back(*s4k);
  }
  if (want("raw_fdatasync_4KiB")) {
    BenchResult raw = RunRawFdatasync(c, 4096, c.threads * c.depth * c.batch);
    if (s4k && raw.mb_per_sec > 0) {
      results.back().extra["pct_of_raw"] = 100.0 * s4k->mb_per_sec / raw.mb_per_sec;
    }
    results.push_back(raw);
  }
  if (want("rpc_append_64B")) results.push_back(RunRpc(c, 64));
  std::filesystem::remove_all(c.dir);
  PrintResults(results, json);
  return 0;
}
