// sequencer_bench: token throughput of the sequencer, in process and over TCP.
//
//   tokens_core_batched  the Sequencer core alone, --batch tokens per Next, from
//                        --core-threads threads: the in-process ceiling
//   tokens_single        one token per seq.next RPC, --callers calls in flight
//                        (closed loop), over loopback TCP
//   tokens_batched       --batch tokens per seq.next RPC, --depth RPCs in
//                        flight, over loopback TCP
//
// ops_per_sec counts tokens; each request names --streams streams (the same
// ones every time, so every grant also updates those stream maps).
//
// Usage: sequencer_bench [--json] [--seconds S] [--only NAME] [--batch N]
//                        [--callers N] [--depth N] [--streams N]

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <functional>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "tally/net/tcp_transport.h"
#include "tally/net/typed.h"
#include "tally/proto/sequencer.pb.h"
#include "tally/sequencer/sequencer.h"
#include "tally/sequencer/sequencer_service.h"

namespace tally::bench {
namespace {

namespace seqpb = ::tally::proto::seq;

constexpr Epoch kEpoch{1};

struct Config {
  double seconds = 3;
  uint32_t batch = 256;  // tokens per Next / per batched RPC
  int callers = 64;      // single-token RPCs in flight
  int depth = 8;         // batched RPCs in flight
  int streams = 1;       // streams named by every request
  int core_threads = 2;  // threads calling the core directly
};

[[noreturn]] void Die(const std::string& what, const Status& st) {
  std::fprintf(stderr, "sequencer_bench: %s: %s\n", what.c_str(), st.ToString().c_str());
  std::exit(1);
}

std::vector<StreamId> Streams(const Config& c) {
  std::vector<StreamId> out;
  for (int i = 0; i < c.streams; ++i) out.push_back(StreamId{0xbe4c, static_cast<uint64_t>(i)});
  return out;
}

void Bootstrap(sequencer::Sequencer& core) {
  auto st = core.Bootstrap(kEpoch, Address(0), {});
  if (!st.ok()) Die("bootstrap", st.status());
}

BenchResult RunCore(const Config& c) {
  sequencer::Sequencer core;
  Bootstrap(core);
  const std::vector<StreamId> streams = Streams(c);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> tokens{0};
  LatencyRecorder lat;
  auto worker = [&] {
    uint64_t mine = 0;
    for (uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
      // Timing every call would cost more than the call: sample 1 in 64.
      const bool sample = i % 64 == 0;
      auto t0 = sample ? BenchClock::now() : BenchClock::time_point();
      auto g = core.Next(kEpoch, c.batch, streams);
      if (!g.ok()) Die("next", g.status());
      if (sample) lat.Record(MicrosSince(t0), c.batch);
      mine += c.batch;
    }
    tokens.fetch_add(mine);
  };
  auto start = BenchClock::now();
  std::vector<std::thread> threads;
  for (int t = 0; t < c.core_threads; ++t) threads.emplace_back(worker);
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  stop = true;
  for (auto& t : threads) t.join();
  double secs = std::chrono::duration<double>(BenchClock::now() - start).count();
  BenchResult r = MakeResult("tokens_core_batched", tokens.load(), 0, secs, lat);
  r.extra["tokens_per_call"] = c.batch;
  r.extra["threads"] = c.core_threads;
  r.extra["streams_per_request"] = c.streams;
  return r;
}

// Runs `in_flight` closed-loop seq.next calls of `count` tokens over
// loopback TCP for c.seconds.
BenchResult RunRpc(const Config& c, const std::string& name, uint32_t count, int in_flight) {
  sequencer::Sequencer core;
  Bootstrap(core);
  sequencer::SequencerService service(&core);
  net::ServiceRegistry registry;
  service.Register(registry);
  net::TcpTransport server_transport(net::TcpOptions{.io_threads = 1});
  auto server = server_transport.Listen("127.0.0.1:0", &registry);
  if (!server.ok()) Die("listen", server.status());
  net::TcpTransport client_transport(net::TcpOptions{.io_threads = 1});
  auto channel = client_transport.Connect((*server)->endpoint());

  seqpb::NextRequest req;
  req.set_epoch(kEpoch.value());
  req.set_count(count);
  for (StreamId s : Streams(c)) {
    auto* p = req.add_streams();
    p->set_hi(s.hi);
    p->set_lo(s.lo);
  }
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> tokens{0};
  std::atomic<uint64_t> rpcs{0};
  std::atomic<int> outstanding{0};
  LatencyRecorder lat;

  std::function<void()> issue = [&] {
    auto t0 = BenchClock::now();
    outstanding++;
    net::CallTyped<seqpb::NextResponse>(*channel, "seq.next", req, net::CallOptions{},
                                        [&, t0](Result<seqpb::NextResponse> r) {
                                          if (!r.ok()) Die("seq.next", r.status());
                                          if (r->count() != count)
                                            Die("seq.next", Internal("short grant"));
                                          lat.Record(MicrosSince(t0), count);
                                          tokens.fetch_add(count, std::memory_order_relaxed);
                                          rpcs.fetch_add(1, std::memory_order_relaxed);
                                          if (!stop.load()) issue();
                                          outstanding--;
                                        });
  };

  auto start = BenchClock::now();
  for (int i = 0; i < in_flight; ++i) issue();
  std::this_thread::sleep_for(std::chrono::duration<double>(c.seconds));
  stop = true;
  while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  double secs = std::chrono::duration<double>(BenchClock::now() - start).count();
  if (core.Stats().tokens_issued != tokens.load()) {
    Die(name, Internal("tokens acknowledged differ from tokens issued by the core"));
  }
  BenchResult r = MakeResult(name, tokens.load(), 0, secs, lat);
  r.extra["tokens_per_rpc"] = count;
  r.extra["rpcs_in_flight"] = in_flight;
  r.extra["rpcs_per_sec"] = static_cast<double>(rpcs.load()) / secs;
  r.extra["streams_per_request"] = c.streams;
  return r;
}

}  // namespace
}  // namespace tally::bench

int main(int argc, char** argv) {
  using namespace tally::bench;
  Config c;
  bool json = false;
  std::string only;
  CLI::App app{"sequencer_bench: token throughput of the Tally sequencer"};
  app.add_flag("--json", json, "print a JSON array of results");
  app.add_option("--seconds", c.seconds, "duration of each benchmark")->capture_default_str();
  app.add_option("--batch", c.batch, "tokens per batched call")->capture_default_str();
  app.add_option("--callers", c.callers, "single-token RPCs in flight")->capture_default_str();
  app.add_option("--depth", c.depth, "batched RPCs in flight")->capture_default_str();
  app.add_option("--streams", c.streams, "streams named by every request")->capture_default_str();
  app.add_option("--core-threads", c.core_threads, "threads calling the core")
      ->capture_default_str();
  app.add_option("--only", only, "run only the benchmark with this name");
  CLI11_PARSE(app, argc, argv);
  if (c.batch < 1 || c.batch > tally::sequencer::kMaxTokensPerGrant || c.callers < 1 ||
      c.depth < 1 || c.core_threads < 1 || c.streams < 0 ||
      static_cast<size_t>(c.streams) > tally::sequencer::kMaxStreamsPerRequest) {
    std::fprintf(stderr,
                 "sequencer_bench: --batch must be 1..65536, --streams 0..1024, --callers, "
                 "--depth and --core-threads >= 1\n");
    return 2;
  }

  std::vector<BenchResult> results;
  auto want = [&](const char* name) { return only.empty() || only == name; };
  if (want("tokens_core_batched")) results.push_back(RunCore(c));
  if (want("tokens_single")) results.push_back(RunRpc(c, "tokens_single", 1, c.callers));
  if (want("tokens_batched")) results.push_back(RunRpc(c, "tokens_batched", c.batch, c.depth));
  PrintResults(results, json);
  return 0;
}
