// failover_bench: write unavailability after a SIGKILL, on a 3-node
// `tallyctl local` cluster under load (issue 4's target: median <= 1,000 ms).
//
// Per trial: a fresh cluster (every node a log unit, layout server and
// sequencer; node 1 the primary sequencer), 4 threads appending 64-byte
// entries back to back through one client with default options, then a
// SIGKILL of one node: node 3 (a log unit) for failover_log_unit, node 1
// (the primary sequencer, also a log unit) for failover_sequencer. The
// unavailability is the time from the kill to the first successful append
// that was issued after it. Nothing is scripted: the nodes' failure
// detector notices, seals, agrees on the next layout; the clients follow.
// Baseline in the same run: the appends' p50/p99 latency before the kill.

#include <signal.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "local_cluster.h"
#include "tally/client/client.h"
#include "tally/net/tcp_transport.h"

namespace tally::bench {
namespace {

struct Trial {
  double unavailable_ms = 0;
  bool recovered = false;
};

// One trial: returns the unavailability, and adds pre-kill latencies.
Trial RunTrial(const std::string& dir, int victim, double warmup_s, double give_up_s,
               LatencyRecorder& before) {
  auto cluster = LocalCluster::Up(dir, 3);
  if (!cluster.ok()) {
    std::fprintf(stderr, "failover_bench: %s\n", cluster.status().ToString().c_str());
    DownAllClusters();
    std::exit(1);
  }
  net::TcpTransport transport;
  client::ClientOptions o;
  o.transport = &transport;
  o.endpoints = (*cluster)->endpoints();
  o.principal = "failover_bench";
  auto c = client::Client::Create(std::move(o));
  if (!c.ok()) {
    std::fprintf(stderr, "failover_bench: client: %s\n", c.status().ToString().c_str());
    DownAllClusters();
    std::exit(1);
  }
  client::Client& client = **c;

  std::atomic<bool> stop{false};
  std::atomic<bool> killed{false};
  std::mutex mu;
  BenchClock::time_point kill_at{};
  BenchClock::time_point first_after{BenchClock::time_point::max()};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&] {
      const std::string payload(64, 'f');
      while (!stop) {
        const auto start = BenchClock::now();
        const bool after = killed.load();
        auto r = client.Append(payload);
        const auto end = BenchClock::now();
        if (!r.ok()) continue;
        if (!after) {
          before.Record(std::chrono::duration<double, std::micro>(end - start).count());
        } else {
          std::lock_guard lock(mu);
          if (start >= kill_at) first_after = std::min(first_after, end);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(warmup_s));
  // SIGKILL straight to the recorded pid, so the clock starts when the
  // signal is sent (`local kill` then only confirms it is gone).
  const auto& pids = (*cluster)->pids();
  if (static_cast<size_t>(victim) > pids.size()) {
    std::fprintf(stderr, "failover_bench: no pid recorded for node %d\n", victim);
    DownAllClusters();
    std::exit(1);
  }
  {
    std::lock_guard lock(mu);
    kill_at = BenchClock::now();
    killed = true;
    ::kill(static_cast<pid_t>(std::stoll(pids[victim - 1])), SIGKILL);
  }
  Status st = (*cluster)->Kill(victim);  // waits until gone; "not running" is fine
  (void)st;
  const auto give_up = kill_at + std::chrono::duration_cast<BenchClock::duration>(
                                     std::chrono::duration<double>(give_up_s));
  Trial trial;
  while (BenchClock::now() < give_up) {
    {
      std::lock_guard lock(mu);
      if (first_after != BenchClock::time_point::max()) {
        trial.recovered = true;
        trial.unavailable_ms =
            std::chrono::duration<double, std::milli>(first_after - kill_at).count();
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!trial.recovered) trial.unavailable_ms = give_up_s * 1000;
  stop = true;
  for (auto& w : writers) w.join();
  return trial;
}

// State transfer: fill the log with `mb` MiB of 4 KiB entries, take node 3
// out, wipe it, bring it back with `tallyctl node add 3` (which copies every
// address it lacks from the chains' tails, then seals, copies the delta and
// commits). Rate = payload bytes copied / wall time of the command. The
// baseline in the same run: copying node 1's segment files with cp (raw
// disk, no protocol).
std::vector<BenchResult> RunStateTransfer(const std::string& dir, int mb) {
  // --no-heal: the failure detectors would otherwise bring node 3 back by
  // themselves as soon as it answers, racing the timed `node add`.
  auto cluster = LocalCluster::Up(dir, 3, "--segment-mb 64 --no-heal");
  if (!cluster.ok()) {
    std::fprintf(stderr, "failover_bench: %s\n", cluster.status().ToString().c_str());
    DownAllClusters();
    std::exit(1);
  }
  net::TcpTransport transport;
  client::ClientOptions o;
  o.transport = &transport;
  o.endpoints = (*cluster)->endpoints();
  auto c = client::Client::Create(std::move(o));
  if (!c.ok()) {
    std::fprintf(stderr, "failover_bench: client: %s\n", c.status().ToString().c_str());
    DownAllClusters();
    std::exit(1);
  }
  const std::string payload(4096, 's');
  const uint64_t n = static_cast<uint64_t>(mb) * 256;
  std::atomic<uint64_t> done{0}, failed{0};
  for (uint64_t i = 0; i < n; ++i) {
    while (i - done.load() > 2048) std::this_thread::sleep_for(std::chrono::microseconds(200));
    (*c)->AppendAsync(payload, {}, [&](tally::Result<tally::Address> r) {
      if (!r.ok()) failed++;
      done++;
    });
  }
  while (done.load() < n) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  c->reset();
  const std::string ctl = TallyctlNextToSelf();
  const std::string env = "TALLY_ENDPOINTS=" + (*cluster)->EndpointList() + " ";
  (void)(*cluster)->Kill(3);
  RunShell(env + ctl + " node remove 3");  // or already out (the failure detector)
  Status st = (*cluster)->Start(3, /*wipe=*/true);
  if (!st.ok()) std::fprintf(stderr, "failover_bench: %s\n", st.ToString().c_str());
  const auto t0 = BenchClock::now();
  auto [rc, out] = RunShell(env + ctl + " -o json node add 3 2>/dev/null");
  const double secs = std::chrono::duration<double>(BenchClock::now() - t0).count();
  double bytes = 0;
  if (auto pos = out.find("\"bytes\":"); pos != std::string::npos) {
    bytes = std::stod(out.substr(pos + 8));
  }
  if (rc != 0) std::fprintf(stderr, "failover_bench: node add: %s\n", out.c_str());
  BenchResult r;
  r.name = "state_transfer_4KiB";
  r.mb_per_sec = secs > 0 ? bytes / secs / 1e6 : 0;
  r.extra["bytes"] = bytes;
  r.extra["seconds"] = secs;
  r.extra["append_failures"] = static_cast<double>(failed.load());
  // Baseline: the same bytes as files, copied by cp.
  const std::string src = (*cluster)->dir() + "/node-1/log";
  const std::string dst = (*cluster)->dir() + "/cp-baseline";
  std::filesystem::remove_all(dst);
  const auto c0 = BenchClock::now();
  RunShell("cp -r " + src + " " + dst + " && sync -f " + dst);
  const double csecs = std::chrono::duration<double>(BenchClock::now() - c0).count();
  double cbytes = 0;
  for (const auto& f : std::filesystem::recursive_directory_iterator(dst)) {
    if (f.is_regular_file()) cbytes += static_cast<double>(f.file_size());
  }
  std::filesystem::remove_all(dst);
  BenchResult b;
  b.name = "baseline_cp_segment_files";
  b.mb_per_sec = csecs > 0 ? cbytes / csecs / 1e6 : 0;
  b.extra["bytes"] = cbytes;
  b.extra["seconds"] = csecs;
  return {r, b};
}

BenchResult Summarize(const std::string& name, std::vector<Trial> trials) {
  std::vector<double> ms;
  int failed = 0;
  for (const auto& t : trials) {
    ms.push_back(t.unavailable_ms);
    failed += t.recovered ? 0 : 1;
  }
  std::sort(ms.begin(), ms.end());
  BenchResult r;
  r.name = name;
  r.extra["median_ms"] = ms.empty() ? 0 : ms[ms.size() / 2];
  r.extra["max_ms"] = ms.empty() ? 0 : ms.back();
  r.extra["min_ms"] = ms.empty() ? 0 : ms.front();
  r.extra["trials"] = static_cast<double>(ms.size());
  r.extra["not_recovered"] = failed;
  return r;
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) {
  using namespace tally::bench;
  CLI::App app{
      "failover_bench: write unavailability after SIGKILL of a log unit or of the primary "
      "sequencer on a 3-node local cluster under load"};
  bool json = false;
  int trials = 10;
  double warmup = 1.0;
  double give_up = 15.0;
  std::string dir = "/var/tmp/tally-failover-bench";
  std::string only;
  app.add_flag("--json", json, "print results as JSON");
  app.add_option("--trials", trials, "trials per case")->capture_default_str();
  app.add_option("--warmup", warmup, "seconds of load before the kill")->capture_default_str();
  app.add_option("--give-up", give_up, "seconds after the kill to wait for an append")
      ->capture_default_str();
  app.add_option("--dir", dir, "cluster directory (emptied first, removed at the end)")
      ->capture_default_str();
  app.add_option("--only", only, "run one case: log_unit, sequencer or state_transfer");
  int transfer_mb = 256;
  app.add_option("--transfer-mb", transfer_mb, "MiB in the log before the state transfer")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (std::string busy = ClaimScratchDir(dir); !busy.empty()) {
    std::fprintf(stderr, "failover_bench: %s\n", busy.c_str());
    return 1;
  }

  LatencyRecorder before;
  std::vector<BenchResult> results;
  struct Case {
    std::string name;
    int victim;
  };
  for (const Case& c : {Case{"log_unit", 3}, Case{"sequencer", 1}}) {
    if (!only.empty() && only != c.name) continue;
    std::vector<Trial> ts;
    for (int i = 0; i < trials; ++i) {
      ts.push_back(RunTrial(dir, c.victim, warmup, give_up, before));
      if (!json) {
        std::fprintf(stderr, "failover_%s trial %d: %.0f ms%s\n", c.name.c_str(), i + 1,
                     ts.back().unavailable_ms, ts.back().recovered ? "" : " (not recovered)");
      }
    }
    results.push_back(Summarize("failover_" + c.name, std::move(ts)));
  }
  if (only.empty() || only == "state_transfer") {
    for (auto& r : RunStateTransfer(dir, transfer_mb)) results.push_back(std::move(r));
  }
  BenchResult base;
  base.name = "baseline_append_64B_before_kill";
  base.p50_us = before.Quantile(0.5);
  base.p99_us = before.Quantile(0.99);
  base.extra["appends"] = static_cast<double>(before.total());
  results.push_back(base);
  // Every trial's cluster is down by now; the data (state_transfer leaves
  // three copies of --transfer-mb) goes too. A failed run keeps it, with
  // the nodes' logs, to look at.
  std::filesystem::remove_all(dir);
  PrintResults(results, json);
  return 0;
}
