// append_bench: the client runtime against a real 3-node cluster
// (`tallyctl local up --nodes 3`, chains of 3 on loopback), next to an
// unreplicated baseline in the same run.
//
//   append_64B_chain3_stripes1  durable 3-way-replicated 64 B appends,
//   append_64B_chain3_stripes2  closed loop, a window of W AppendAsync calls
//                               in flight; latency per append
//   append_64B_chain3_stripes1_half_load
//                               open loop at half the rate just measured;
//   append_64B_chain3_stripes1_100k
//                               the same open loop at 100,000/s, half the
//                               200,000/s target;
//                               latency from each append's scheduled issue
//   append_64B_chain3_stripes1_100k_no_spacing
//                               the same again from a client with
//                               batch_spacing 0 (cut a batch as soon as an
//                               append thread is free): the baseline of the
//                               client's batch spacing
//   append_64B_chain3_stripes1_at_<RATE>
//                               with --rates: the same open loop at each
//                               rate asked for (latency against load; these
//                               rows run whatever --only names)
//   read_64B                    Client::ReadRange in chunks (entries/s)
//   read_64B_single             Client::Read from several threads (reads/s)
//   baseline_unreplicated_rpc_64B
//                               log.write_batch straight to one log unit of
//                               a fresh cluster: no sequencer, no chain
//
// Every row reports CPU per operation (this process and the servers, from
// /proc/<pid>/stat) so a missed target says where the time goes. Paced rows
// also run a raw-disk probe (DiskProbe: a 4 KiB write + fdatasync every
// --disk-probe-ms on the same disk) and report its latencies and stalls
// (syncs over 5 ms) beside the appends', with windows_over_5ms_in_disk_stalls
// and p99_us_outside_disk_stalls: the slow windows whose appends lived
// through a probe stall, and the p99 of the appends that did not. Append
// rows also report the log units' own group commits over the row
// (log.stats): unit_commits_per_sec, unit_records_per_commit,
// unit_commit_mean_us, unit_commit_p50_le_us, unit_commit_p99_le_us,
// unit_commit_max_le_us, unit_commits_over_5ms.
//
// Usage: append_bench [--json] [--seconds S] [--dir DIR] [--only NAME]
//                     [--rates R1,R2,...]

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <semaphore>
#include <sstream>
#include <thread>

#include "bench_util.h"
#include "disk_probe.h"
#include "local_cluster.h"
#include "tally/client/client.h"
#include "tally/client/log_unit_client.h"
#include "tally/client/unit_stats.h"
#include "tally/net/tcp_transport.h"
#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"
#include "write_batch_pipeline.h"

namespace tally::bench {
namespace {

struct Config {
  double seconds = 3;
  double warmup_seconds = 0.5;
  std::string dir = "/var/tmp/tally-append-bench";
  int window = 4096;     // appends in flight (closed loop)
  int issuers = 2;       // threads calling AppendAsync
  int max_batch = 1024;  // ClientOptions::max_batch
  // The client's own defaults: the rows measure what a caller gets.
  int append_threads = client::ClientOptions{}.append_threads;
  double batch_spacing = client::ClientOptions{}.batch_spacing;
  int read_threads = 4;
  int read_chunk = 4096;     // entries per ReadRange
  bool timeline = false;     // paced rows: print the worst latency per 10 ms to stderr
  double disk_probe_ms = 5;  // paced rows: a raw-disk sync this often (0: none)
  int rpc_batch = 256;       // baseline: entries per log.write_batch
  int rpc_depth = 8;         // baseline: RPCs in flight
};

[[noreturn]] void Die(const std::string& what, const Status& st) {
  std::fprintf(stderr, "append_bench: %s: %s\n", what.c_str(), st.ToString().c_str());
  DownAllClusters();
  std::exit(1);
}

// utime + stime of `pid` ("self" for this process), in seconds.
double CpuSeconds(const std::string& pid) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  std::istringstream rest(line.substr(line.rfind(')') + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// A `tallyctl local` cluster of 3 nodes; `local down` on destruction.
class Cluster {
 public:
  Cluster(const std::string& dir, int stripes) {
    auto c = LocalCluster::Up(dir, 3, "--stripes " + std::to_string(stripes));
    if (!c.ok()) Die("local up", c.status());
    cluster_ = std::move(*c);
  }
  const std::vector<std::string>& endpoints() const { return cluster_->endpoints(); }

  // CPU seconds of every server process so far.
  double ServerCpu() const {
    double s = 0;
    for (const auto& p : cluster_->pids()) s += CpuSeconds(p);
    return s;
  }

 private:
  std::unique_ptr<LocalCluster> cluster_;
};

// CPU used by this process and the servers between construction and Add.
class CpuMeter {
 public:
  explicit CpuMeter(const Cluster& c) : c_(c), self0_(CpuSeconds("self")), srv0_(c.ServerCpu()) {}
  // Ends the measurement (else Add does), leaving out the work after it.
  void Stop() {
    self1_ = CpuSeconds("self");
    srv1_ = c_.ServerCpu();
    stopped_ = true;
  }
  void Add(BenchResult& r, uint64_t ops) const {
    if (ops == 0) return;
    double n = static_cast<double>(ops);
    r.extra["client_cpu_us_per_op"] = 1e6 * ((stopped_ ? self1_ : CpuSeconds("self")) - self0_) / n;
    r.extra["servers_cpu_us_per_op"] = 1e6 * ((stopped_ ? srv1_ : c_.ServerCpu()) - srv0_) / n;
  }

 private:
  const Cluster& c_;
  double self0_, srv0_;
  double self1_ = 0, srv1_ = 0;
  bool stopped_ = false;
};

// The log units' own group commits (write + fdatasync) between
// construction and Stop, pooled over the cluster's units (log.stats): the
// disk's share of the appends' latency, measured by the servers themselves.
class UnitCommitMeter {
 public:
  explicit UnitCommitMeter(const Cluster& c) {
    for (const std::string& ep : c.endpoints()) {
      units_.push_back(std::make_unique<client::LogUnitClient>(transport_.Connect(ep), Epoch(0)));
    }
    before_ = Take();
  }
  void Stop() { after_ = Take(); }
  // Adds unit_commits_per_sec (per unit), unit_records_per_commit,
  // unit_commit_mean_us, the pooled unit_commit_p50_le_us /
  // unit_commit_p99_le_us / unit_commit_max_le_us (bucket bounds; -1:
  // slower than the last bound) and unit_commits_over_5ms (commits in
  // buckets above 5 ms, the probe's stall threshold).
  void Add(BenchResult& r, double secs) {
    if (after_.empty()) Stop();
    if (before_.empty() || after_.empty()) return;  // Take said why
    client::CommitHistogram pooled;
    for (size_t i = 0; i < units_.size(); ++i) {
      Result<client::CommitHistogram> d = after_[i].Since(before_[i]);
      Status st = d.ok() ? pooled.Merge(*d) : d.status();
      if (!st.ok()) {
        std::fprintf(stderr, "append_bench: %s: no unit commit figures: %s\n", r.name.c_str(),
                     st.ToString().c_str());
        return;
      }
    }
    auto bound = [](uint64_t us) { return us == UINT64_MAX ? -1.0 : static_cast<double>(us); };
    const double n = static_cast<double>(pooled.commits);
    r.extra["unit_commits_per_sec"] = n / static_cast<double>(units_.size()) / secs;
    r.extra["unit_records_per_commit"] = n > 0 ? static_cast<double>(pooled.records) / n : 0;
    r.extra["unit_commit_mean_us"] = pooled.MeanUs();
    r.extra["unit_commit_p50_le_us"] = bound(pooled.QuantileLeUs(0.5));
    r.extra["unit_commit_p99_le_us"] = bound(pooled.QuantileLeUs(0.99));
    r.extra["unit_commit_max_le_us"] = bound(pooled.QuantileLeUs(1.0));
    uint64_t slow = 0;
    for (size_t b = 0; b < pooled.counts.size(); ++b) {
      if (b > 0 && pooled.le_us[b - 1] >= 5000) slow += pooled.counts[b];
    }
    r.extra["unit_commits_over_5ms"] = static_cast<double>(slow);
  }

 private:
  // One histogram per unit, or none (having printed why) if any unit failed.
  std::vector<client::CommitHistogram> Take() {
    std::vector<client::CommitHistogram> out;
    for (auto& u : units_) {
      auto s = u->Stats();
      auto h =
          s.ok() ? client::CommitHistogram::From(*s) : Result<client::CommitHistogram>(s.status());
      if (!h.ok()) {
        std::fprintf(stderr, "append_bench: log.stats: %s\n", h.status().ToString().c_str());
        return {};
      }
      out.push_back(std::move(*h));
    }
    return out;
  }

  net::TcpTransport transport_{{.io_threads = 1}};
  std::vector<std::unique_ptr<client::LogUnitClient>> units_;
  std::vector<client::CommitHistogram> before_, after_;
};

std::unique_ptr<client::Client> Connect(const Config& c, net::Transport& t, const Cluster& cl) {
  client::ClientOptions o;
  o.transport = &t;
  o.endpoints = cl.endpoints();
  o.max_batch = static_cast<size_t>(c.max_batch);
  o.append_threads = c.append_threads;
  o.batch_spacing = c.batch_spacing;
  auto r = client::Client::Create(std::move(o));
  if (!r.ok()) Die("client", r.status());
  return std::move(*r);
}

const std::string kPayload(64, 'x');

// Closed loop: `issuers` threads each keep window/issuers appends in flight.
BenchResult RunAppend(const Config& c, const std::string& name, client::Client& cl,
                      const Cluster& cluster) {
  std::atomic<bool> measuring{false}, stop{false};
  std::atomic<uint64_t> acked{0}, failed{0};
  LatencyRecorder lat;
  const int per_issuer = std::max(1, c.window / c.issuers);
  auto issuer = [&]() {
    std::counting_semaphore<1 << 20> slots(per_issuer);
    while (!stop.load(std::memory_order_relaxed)) {
      slots.acquire();
      auto t0 = BenchClock::now();
      cl.AppendAsync(kPayload, {}, [&, t0](Result<Address> r) {
        if (measuring.load(std::memory_order_relaxed)) {
          if (r.ok()) {
            lat.Record(MicrosSince(t0));
            acked.fetch_add(1, std::memory_order_relaxed);
          } else {
            failed.fetch_add(1, std::memory_order_relaxed);
          }
        }
        slots.release();
      });
    }
    for (int i = 0; i < per_issuer; ++i) slots.acquire();  // drain
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < c.issuers; ++t) threads.emplace_back(issuer);
  std::this_thread::sleep_for(std::chrono::duration<double>(c.warmup_seconds));
  CpuMeter cpu(cluster);
  UnitCommitMeter commits(cluster);
  auto stats0 = cl.stats();
  auto start = BenchClock::now();
  measuring = true;
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  measuring = false;
  commits.Stop();
  double secs = std::chrono::duration<double>(BenchClock::now() - start).count();
  uint64_t n = acked.load();
  BenchResult r = MakeResult(name, n, kPayload.size(), secs, lat);
  cpu.Add(r, n);
  commits.Add(r, secs);
  auto stats1 = cl.stats();
  stop = true;
  for (auto& t : threads) t.join();
  r.extra["window"] = per_issuer * c.issuers;
  r.extra["issuer_threads"] = c.issuers;
  r.extra["max_batch"] = c.max_batch;
  r.extra["append_threads"] = c.append_threads;
  r.extra["batch_spacing"] = c.batch_spacing;
  r.extra["errors"] = static_cast<double>(failed.load());
  if (stats1.sequencer_calls > stats0.sequencer_calls) {
    r.extra["appends_per_seq_call"] =
        static_cast<double>(stats1.tokens - stats0.tokens) /
        static_cast<double>(stats1.sequencer_calls - stats0.sequencer_calls);
  }
  return r;
}

// The shared state of one paced run. Each append's completion writes only
// its own slot (no lock; read once `outstanding` is back to 0), and its
// callback captures just the run and the append's index, so that issuing
// costs the load generator as little CPU as possible: on this 2-core box it
// shares the cores with the three servers.
struct PacedRun {
  BenchClock::time_point start;
  std::chrono::duration<double> gap;  // between scheduled issue times
  std::vector<float> latency_us;      // per append; < 0: failed
  std::atomic<uint64_t> outstanding{0};

  BenchClock::time_point Due(uint64_t i) const {
    return start + std::chrono::duration_cast<BenchClock::duration>(gap * i);
  }
  void Done(uint64_t i, const Result<Address>& r) {
    latency_us[i] = r.ok() ? static_cast<float>(MicrosSince(Due(i))) : -1.0f;
    outstanding.fetch_sub(1);
  }
};

// Open loop at `rate` appends/s: each append has a scheduled issue time and
// its latency counts from then, so a stalled issuer shows up as latency.
BenchResult RunPaced(const Config& c, const std::string& name, client::Client& cl,
                     const Cluster& cluster, double rate) {
  std::unique_ptr<DiskProbe> probe;
  if (c.disk_probe_ms > 0) {
    probe = std::make_unique<DiskProbe>(
        c.dir + "/disk-probe.dat",
        std::chrono::microseconds(static_cast<int64_t>(c.disk_probe_ms * 1000)));
    if (!probe->ok()) probe.reset();
  }
  PacedRun run;
  run.gap = std::chrono::duration<double>(1.0 / rate);
  run.latency_us.assign(static_cast<size_t>(rate * c.seconds) + 1, 0);
  CpuMeter cpu(cluster);
  UnitCommitMeter commits(cluster);
  const auto stats0 = cl.stats();
  run.start = BenchClock::now();
  const auto end = run.start + std::chrono::duration<double>(c.seconds);
  uint64_t issued = 0;
  uint64_t max_outstanding = 0;
  while (true) {
    auto now = BenchClock::now();
    if (now >= end) break;
    // Issue everything due by now.
    while (issued < run.latency_us.size()) {
      auto due = run.Due(issued);
      if (due > now || due >= end) break;
      run.outstanding.fetch_add(1);
      cl.AppendAsync(kPayload, {},
                     [r = &run, i = issued](Result<Address> res) { r->Done(i, res); });
      issued++;
    }
    max_outstanding = std::max(max_outstanding, run.outstanding.load());
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  while (run.outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  cpu.Stop();
  commits.Stop();
  double secs = std::chrono::duration<double>(BenchClock::now() - run.start).count();
  const auto stats1 = cl.stats();
  if (probe) probe->Stop();

  LatencyRecorder lat;
  uint64_t acked = 0, failed = 0;
  // Worst latency (µs) of the appends scheduled in each 10 ms of the run.
  std::vector<double> worst(static_cast<size_t>(c.seconds * 100) + 1, 0);
  for (uint64_t i = 0; i < issued; ++i) {
    const double us = run.latency_us[i];
    if (us < 0) {
      failed++;
      continue;
    }
    acked++;
    lat.Record(us);
    double& w =
        worst[std::min(worst.size() - 1, static_cast<size_t>((run.Due(i) - run.start) /
                                                             std::chrono::milliseconds(10)))];
    w = std::max(w, us);
  }
  BenchResult r = MakeResult(name, acked, kPayload.size(), secs, lat);
  cpu.Add(r, acked);
  commits.Add(r, secs);

  // Microseconds from the probe's start to the row's.
  const double probe_lead =
      probe ? std::chrono::duration<double, std::micro>(run.start - probe->start()).count() : 0;
  int slow_windows = 0, slow_windows_in_stalls = 0;
  size_t next_stall = 0;
  for (size_t i = 0; i < worst.size(); ++i) {
    const double us = worst[i];
    const double from = probe_lead + static_cast<double>(i) * 10'000;
    if (c.timeline && probe) {
      for (; next_stall < probe->stalls().size() && probe->stalls()[next_stall].start_us < from;
           ++next_stall) {
        const DiskProbe::Stall& s = probe->stalls()[next_stall];
        std::fprintf(stderr, "%s: +%5.0f ms  disk probe sync took %.1f ms\n", name.c_str(),
                     (s.start_us - probe_lead) / 1000, s.took_us / 1000);
      }
    }
    if (us <= 5000) continue;
    slow_windows++;
    const bool in_stall = probe && probe->OverlapsStall(from, from + 10'000 + us);
    if (in_stall) slow_windows_in_stalls++;
    if (c.timeline) {
      std::fprintf(stderr, "%s: +%5zu ms  worst %7.1f ms%s\n", name.c_str(), i * 10, us / 1000.0,
                   in_stall ? "  (lived through a disk stall)" : "");
    }
  }
  // 10 ms windows whose worst append took over 5 ms (the p99 target).
  r.extra["windows_over_5ms"] = slow_windows;
  if (probe) {
    probe->AddTo(r);
    // The same, counting only appends that never waited through a probe
    // stall: what Tally's own latency would be on a disk that does not stall
    // (an upper bound: the backlog a stall leaves behind still counts).
    LatencyRecorder clear;
    uint64_t in_stalls = 0;
    for (uint64_t i = 0; i < issued; ++i) {
      const double us = run.latency_us[i];
      if (us < 0) continue;
      const double at = probe_lead + MicrosBetween(run.start, run.Due(i));
      if (probe->OverlapsStall(at, at + us)) {
        in_stalls++;
      } else {
        clear.Record(us);
      }
    }
    r.extra["windows_over_5ms_in_disk_stalls"] = slow_windows_in_stalls;
    r.extra["appends_in_disk_stalls"] = static_cast<double>(in_stalls);
    r.extra["p99_us_outside_disk_stalls"] = clear.Quantile(0.99);
  }
  r.extra["target_rate"] = rate;
  r.extra["errors"] = static_cast<double>(failed);
  r.extra["max_in_flight"] = static_cast<double>(max_outstanding);
  if (stats1.sequencer_calls > stats0.sequencer_calls) {
    r.extra["appends_per_seq_call"] =
        static_cast<double>(stats1.tokens - stats0.tokens) /
        static_cast<double>(stats1.sequencer_calls - stats0.sequencer_calls);
  }
  r.extra["max_batch"] = c.max_batch;
  r.extra["append_threads"] = c.append_threads;
  r.extra["batch_spacing"] = c.batch_spacing;
  return r;
}

// `read_threads` threads each read chunks [a, a + chunk) of [0, tail),
// round robin, with Client::ReadRange (chunked = true) or one Client::Read
// per address; counts entries.
BenchResult RunRead(const Config& c, const std::string& name, client::Client& cl,
                    const Cluster& cluster, bool chunked) {
  auto tail = cl.Tail();
  if (!tail.ok()) Die("tail", tail.status());
  const uint64_t end = tail->value();
  if (end == 0) Die(name, FailedPrecondition("nothing appended to read"));
  const uint64_t chunk = std::min<uint64_t>(c.read_chunk, end);
  const uint64_t chunks = end / chunk;
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> next_chunk{0}, entries{0};
  LatencyRecorder lat;
  CpuMeter cpu(cluster);
  auto reader = [&]() {
    while (!stop.load(std::memory_order_relaxed)) {
      uint64_t from = (next_chunk.fetch_add(1) % chunks) * chunk;
      if (chunked) {
        auto t0 = BenchClock::now();
        auto r = cl.ReadRange(Address(from), Address(from + chunk));
        if (!r.ok()) Die("read_range", r.status());
        if (r->size() != chunk) Die("read_range", Internal("short range"));
        lat.Record(MicrosSince(t0));
        entries.fetch_add(r->size(), std::memory_order_relaxed);
        continue;
      }
      for (uint64_t a = from; a < from + chunk && !stop.load(std::memory_order_relaxed); ++a) {
        auto t0 = BenchClock::now();
        auto r = cl.Read(Address(a));
        if (!r.ok()) Die("read", r.status());
        lat.Record(MicrosSince(t0));
        entries.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };
  auto start = BenchClock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < c.read_threads; ++t) threads.emplace_back(reader);
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(BenchClock::now() - start).count();
  BenchResult r = MakeResult(name, entries.load(), kPayload.size(), secs, lat);
  cpu.Add(r, entries.load());
  r.extra["threads"] = c.read_threads;
  r.extra["log_entries"] = static_cast<double>(end);
  if (chunked) r.extra["entries_per_read_range"] = static_cast<double>(chunk);
  return r;
}

// log.write_batch to one log unit of `cluster`, `rpc_depth` RPCs of
// `rpc_batch` entries in flight, at addresses from 1 << 40 up.
BenchResult RunBaseline(const Config& c, const Cluster& cluster) {
  net::TcpTransport transport({.io_threads = 1});
  auto channel = transport.Connect(cluster.endpoints()[0]);
  WriteBatchPipeline load(*channel, kPayload, c.rpc_batch, c.rpc_depth, uint64_t{1} << 40);
  load.Start();
  std::this_thread::sleep_for(std::chrono::duration<double>(c.warmup_seconds));
  CpuMeter cpu(cluster);
  auto start = BenchClock::now();
  load.SetMeasuring(true);
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  load.SetMeasuring(false);
  double secs = std::chrono::duration<double>(BenchClock::now() - start).count();
  BenchResult r = MakeResult("baseline_unreplicated_rpc_64B", load.acked(), kPayload.size(), secs,
                             load.latencies());
  cpu.Add(r, load.acked());
  load.Stop();
  r.extra["rpcs_in_flight"] = c.rpc_depth;
  r.extra["entries_per_rpc"] = c.rpc_batch;
  return r;
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) {
  using namespace tally::bench;
  Config c;
  bool json = false;
  std::string only;
  CLI::App app{"append_bench: replicated appends and reads on a local 3-node Tally cluster"};
  app.add_flag("--json", json, "print a JSON array of results");
  app.add_option("--seconds", c.seconds, "measured duration of each benchmark")
      ->capture_default_str();
  app.add_option("--dir", c.dir, "scratch directory for the clusters (removed at the end)")
      ->capture_default_str();
  app.add_option("--only", only, "run only the benchmark with this name");
  app.add_option("--window", c.window, "appends in flight (closed loop)")->capture_default_str();
  app.add_option("--issuers", c.issuers, "threads calling AppendAsync")->capture_default_str();
  app.add_option("--max-batch", c.max_batch, "ClientOptions::max_batch")->capture_default_str();
  app.add_option("--append-threads", c.append_threads, "ClientOptions::append_threads")
      ->capture_default_str();
  app.add_option("--batch-spacing", c.batch_spacing, "ClientOptions::batch_spacing (0 to 1)")
      ->capture_default_str();
  app.add_option("--read-threads", c.read_threads, "reader threads")->capture_default_str();
  app.add_option("--read-chunk", c.read_chunk, "entries per ReadRange")->capture_default_str();
  app.add_option("--disk-probe-ms", c.disk_probe_ms,
                 "paced rows: a raw 4 KiB write + fdatasync on the same disk this often, "
                 "to report the disk's own stalls beside the appends' latency (0: off)")
      ->capture_default_str();
  std::vector<double> rates;
  app.add_option("--rates", rates,
                 "comma-separated appends/s: after the 100k row, a paced row at each, named "
                 "append_64B_chain3_stripes1_at_<RATE> (run whatever --only names)")
      ->delimiter(',');
  app.add_flag("--timeline", c.timeline,
               "paced rows: print to stderr each 10 ms whose worst append took over 5 ms");
  CLI11_PARSE(app, argc, argv);
  if (std::string busy = ClaimScratchDir(c.dir); !busy.empty()) {
    std::fprintf(stderr, "append_bench: %s\n", busy.c_str());
    return 1;
  }
  if (c.window < 1 || c.issuers < 1 || c.max_batch < 1 || c.append_threads < 1 ||
      c.read_threads < 1 || c.read_chunk < 1 || c.seconds <= 0) {
    std::fprintf(stderr, "append_bench: counts must be >= 1 and --seconds > 0\n");
    return 2;
  }
  for (size_t i = 0; i < rates.size(); ++i) {
    if (!(rates[i] >= 1)) {
      std::fprintf(stderr, "append_bench: every --rates value must be at least 1 append/s\n");
      return 2;
    }
    // Rows are named by whole appends/s: two rates with one name would be
    // two rows no reader of the JSON could tell apart.
    for (size_t j = 0; j < i; ++j) {
      if (static_cast<uint64_t>(rates[j]) == static_cast<uint64_t>(rates[i])) {
        std::fprintf(stderr,
                     "append_bench: --rates lists %llu appends/s twice; give each rate once\n",
                     static_cast<unsigned long long>(rates[i]));
        return 2;
      }
    }
  }
  if (!(c.batch_spacing >= 0 && c.batch_spacing <= 1)) {
    std::fprintf(stderr, "append_bench: --batch-spacing must be between 0 and 1\n");
    return 2;
  }
  auto want = [&](const char* name) { return only.empty() || only == name; };
  std::vector<BenchResult> results;
  tally::net::TcpTransport transport({.io_threads = 1});

  const bool s1 = want("append_64B_chain3_stripes1") ||
                  want("append_64B_chain3_stripes1_half_load") ||
                  want("append_64B_chain3_stripes1_100k") ||
                  want("append_64B_chain3_stripes1_100k_no_spacing") || want("read_64B") ||
                  want("read_64B_single") || !rates.empty();
  if (s1) {
    Cluster cluster(c.dir + "/s1", 1);
    auto cl = Connect(c, transport, cluster);
    // The paced and read rows need a rate and entries: the closed loop runs
    // for them even when not asked for by name.
    BenchResult full = RunAppend(c, "append_64B_chain3_stripes1", *cl, cluster);
    if (want("append_64B_chain3_stripes1")) results.push_back(full);
    if (want("append_64B_chain3_stripes1_half_load")) {
      results.push_back(
          RunPaced(c, "append_64B_chain3_stripes1_half_load", *cl, cluster, full.ops_per_sec / 2));
    }
    // Half of the 200,000/s target itself (the "half that load"),
    // next to half of what this run measured.
    if (want("append_64B_chain3_stripes1_100k")) {
      results.push_back(RunPaced(c, "append_64B_chain3_stripes1_100k", *cl, cluster, 100'000));
    }
    for (double r : rates) {
      results.push_back(
          RunPaced(c, "append_64B_chain3_stripes1_at_" + std::to_string(static_cast<uint64_t>(r)),
                   *cl, cluster, r));
    }
    if (want("append_64B_chain3_stripes1_100k_no_spacing")) {
      Config none = c;
      none.batch_spacing = 0;
      auto unspaced = Connect(none, transport, cluster);
      results.push_back(RunPaced(none, "append_64B_chain3_stripes1_100k_no_spacing", *unspaced,
                                 cluster, 100'000));
    }
    if (want("read_64B")) results.push_back(RunRead(c, "read_64B", *cl, cluster, true));
    if (want("read_64B_single")) {
      results.push_back(RunRead(c, "read_64B_single", *cl, cluster, false));
    }
  }
  if (want("append_64B_chain3_stripes2")) {
    Cluster cluster(c.dir + "/s2", 2);
    auto cl = Connect(c, transport, cluster);
    results.push_back(RunAppend(c, "append_64B_chain3_stripes2", *cl, cluster));
  }
  if (want("baseline_unreplicated_rpc_64B")) {
    Cluster cluster(c.dir + "/base", 1);
    results.push_back(RunBaseline(c, cluster));
  }
  DownAllClusters();
  std::filesystem::remove_all(c.dir);
  PrintResults(results, json);
  return 0;
}
