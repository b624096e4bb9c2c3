#include "local.h"

#include <signal.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <filesystem>
#include <future>
#include <iostream>
#include <thread>

#include "cluster_admin.h"
#include "ctl.h"
#include "json.h"
#include "local_cluster.h"
#include "tally/base/posix_env.h"
#include "tally/net/tcp_transport.h"
#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"
#include "tally/proto/sequencer.pb.h"

namespace tally::ctl {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kProbeTimeout{1000};
constexpr milliseconds kStopGrace{10000};
// How long a SIGKILLed process may take to exit entirely.
constexpr milliseconds kKillWait{5000};
// How long starting a node waits for its data dir to be released by another
// process (see ReadyToStart).
constexpr milliseconds kDataDirWait{3000};
constexpr int kUpAttempts = 3;

template <typename Resp, typename Req>
Status Probe(net::Transport& transport, const std::string& endpoint, const char* method,
             const Req& req) {
  auto done = std::make_shared<std::promise<Status>>();
  auto f = done->get_future();
  net::CallOptions options;
  options.timeout = kProbeTimeout;
  net::CallTyped<Resp>(*transport.Connect(endpoint), method, req, options,
                       [done](Result<Resp> r) { done->set_value(r.status()); });
  return f.get();
}

// Whether `node` serves: log.tail answers (log role) and, for the
// sequencer, seq.tail answers (it is bootstrapped).
Status ProbeNode(net::Transport& transport, const LocalCluster& c, const LocalNode& node) {
  bool log_role = false;
  for (const auto& r : node.roles) log_role |= r == "log";
  if (log_role) {
    proto::TailRequest req;
    req.set_epoch(c.epoch);
    Status st = Probe<proto::TailResponse>(transport, node.endpoint, "log.tail", req);
    // A unit sealed at a later epoch (the cluster reconfigured since
    // cluster.json was written) answered: it serves.
    if (st.code() == Code::kWrongEpoch || st.code() == Code::kSealed) st = Status::OK();
    if (!st.ok()) return st.WithContext("log.tail");
  }
  if (node.sequencer() && !node.layout()) {
    // A static-layout sequencer: it serves once bootstrapped. (With layout
    // servers a sequencer may be a standby that never bootstraps; up waits
    // for the primary separately, WaitSequencer.)
    proto::seq::TailRequest req;
    req.set_epoch(c.epoch);
    Status st = Probe<proto::seq::TailResponse>(transport, node.endpoint, "seq.tail", req);
    if (!st.ok()) return st.WithContext("seq.tail");
  }
  return Status::OK();
}

// Waits until the primary sequencer at `endpoint` answers seq.tail.
Status WaitSequencer(net::Transport& transport, const LocalCluster& c, const std::string& endpoint,
                     milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  proto::seq::TailRequest req;
  req.set_epoch(c.epoch);
  while (true) {
    Status st = Probe<proto::seq::TailResponse>(transport, endpoint, "seq.tail", req);
    if (st.ok()) return st;
    if (std::chrono::steady_clock::now() >= deadline) {
      return st.WithContext("the primary sequencer " + endpoint + " did not bootstrap within " +
                            std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(milliseconds(20));
  }
}

std::string ReadyFile(const LocalCluster& c, const LocalNode& n) {
  return c.dir + "/node-" + std::to_string(n.id) + ".ready";
}

std::string NodeLabel(const LocalNode& n) {
  return "node " + std::to_string(n.id) + " (" + n.endpoint + ")";
}

// Waits until every node in `ids` serves. A node whose process exits fails
// the wait at once; *bind_failed says whether it could not take its port.
Status WaitServing(net::Transport& transport, const LocalCluster& c,
                   const std::vector<uint64_t>& ids, milliseconds timeout, bool* bind_failed) {
  *bind_failed = false;
  auto deadline = Clock::now() + timeout;
  std::vector<uint64_t> waiting = ids;
  std::map<uint64_t, Status> last;
  while (!waiting.empty()) {
    std::vector<uint64_t> still;
    for (uint64_t id : waiting) {
      const LocalNode& n = *c.Find(id);
      if (!NodeProcessAlive(n)) {
        std::string line = LastLogLine(n.log_file);
        *bind_failed = line.find("listening on") != std::string::npos;
        return Unavailable(NodeLabel(n) + " exited while starting: " + line + "; see " +
                           n.log_file);
      }
      Status st = ProbeNode(transport, c, n);
      if (!st.ok()) {
        last[id] = st;
        still.push_back(id);
      }
    }
    waiting = std::move(still);
    if (waiting.empty()) break;
    if (Clock::now() >= deadline) {
      const LocalNode& n = *c.Find(waiting.front());
      return Timeout(NodeLabel(n) + " does not serve after " +
                     std::to_string(timeout.count() / 1000) + " s (" + last[n.id].ToString() +
                     "); see " + n.log_file);
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return Status::OK();
}

std::string RolesJson(const LocalNode& n) {
  std::string out = "[";
  for (size_t i = 0; i < n.roles.size(); ++i) out += (i ? "," : "") + JsonString(n.roles[i]);
  return out + "]";
}

std::string RolesText(const LocalNode& n) {
  std::string out;
  for (const auto& r : n.roles) out += (out.empty() ? "" : ",") + r;
  return out;
}

// Prints every node: a table, or a JSON array of {id, endpoint, pid, roles, up}.
void PrintNodes(net::Transport& transport, const LocalCluster& c, bool json) {
  std::string out = json ? "[" : "";
  if (!json) {
    char header[160];
    std::snprintf(header, sizeof(header), "%-4s %-22s %-8s %-21s %-6s %s\n", "ID", "ENDPOINT",
                  "PID", "ROLES", "STATE", "LOG");
    out += header;
  }
  for (size_t i = 0; i < c.nodes.size(); ++i) {
    const LocalNode& n = c.nodes[i];
    bool up = NodeProcessAlive(n) && ProbeNode(transport, c, n).ok();
    if (json) {
      out += (i ? "," : "") + JsonObject()
                                  .Add("id", n.id)
                                  .Add("endpoint", n.endpoint)
                                  .Add("pid", static_cast<uint64_t>(n.pid))
                                  .AddRaw("roles", RolesJson(n))
                                  .Add("up", up)
                                  .Add("log", n.log_file)
                                  .str();
    } else {
      char line[512];
      std::snprintf(line, sizeof(line), "%-4llu %-22s %-8lld %-21s %-6s %s\n",
                    static_cast<unsigned long long>(n.id), n.endpoint.c_str(),
                    static_cast<long long>(n.pid), RolesText(n).c_str(), up ? "up" : "down",
                    n.log_file.c_str());
      out += line;
    }
  }
  std::cout << out << (json ? "]\n" : "");
}

// Errors of `tallyctl local` name the command group.
int LocalFail(bool json, const Status& st) { return Fail(json, st, "tallyctl local"); }

// Whether `n` (not running) can be started again on its data: a server
// started while an earlier one still holds the data dir's RocksDB LOCK fails
// at once. The process that last ran the node may still be exiting (killed
// by something other than `local kill`, which waits), and another process
// may use the data dir. Waiting is bounded: an exiting process drops its
// locks within milliseconds (or as long as tearing down its memory takes on
// a loaded machine), while a live tally-server on the data dir never does,
// and is named in the error instead.
Status ReadyToStart(const LocalNode& n) {
  if (!WaitNodeGone(n, kKillWait)) {
    return Unavailable("the previous process of " + NodeLabel(n) + " (pid " +
                       std::to_string(n.pid) + ") is still exiting after " +
                       std::to_string(kKillWait.count() / 1000) + " s; retry later");
  }
  return WaitDataDirFree(n, kDataDirWait);
}

// Starts the nodes `ids` of `c` (recording their pids in cluster.json).
Status SpawnNodes(LocalCluster& c, const std::vector<uint64_t>& ids) {
  for (uint64_t id : ids) {
    LocalNode& n = *c.Find(id);
    TALLY_RETURN_IF_ERROR(ReadyToStart(n).WithContext("cannot start " + NodeLabel(n)));
    auto pid = SpawnNode(c, n, ReadyFile(c, n));
    if (!pid.ok()) return pid.status().WithContext("starting " + NodeLabel(n));
    n.pid = *pid;
  }
  return WriteCluster(c);
}

std::vector<uint64_t> AllIds(const LocalCluster& c) {
  std::vector<uint64_t> ids;
  for (const auto& n : c.nodes) ids.push_back(n.id);
  return ids;
}

// Kills every running node of `c` at once (a failed `up` attempt).
void KillAll(const LocalCluster& c) {
  for (const auto& n : c.nodes) SignalNode(n, SIGKILL);
  for (const auto& n : c.nodes) WaitNodeGone(n, kKillWait);
}

// A fresh cluster of `nodes` nodes in `settings.dir`, its servers run as
// `settings` says (server_bin and the tally-server flags), retried when a
// picked port was taken before its node could bind it.
Result<LocalCluster> CreateCluster(net::Transport& transport, const LocalCluster& settings,
                                   uint32_t nodes, uint32_t stripes, uint32_t chain,
                                   milliseconds wait) {
  const std::string& dir = settings.dir;
  Status last;
  for (int attempt = 1; attempt <= kUpAttempts; ++attempt) {
    LocalCluster c = settings;
    c.nodes.clear();
    c.layout_file = dir + "/layout.json";
    std::vector<std::string> endpoints;
    for (uint32_t i = 1; i <= nodes; ++i) {
      auto port = PickFreePort();
      if (!port.ok()) return port.status();
      LocalNode n;
      n.id = i;
      n.endpoint = "127.0.0.1:" + std::to_string(*port);
      n.roles = {"log", "layout", "sequencer"};
      n.data_dir = dir + "/node-" + std::to_string(i);
      n.log_file = dir + "/node-" + std::to_string(i) + ".log";
      endpoints.push_back(n.endpoint);
      c.nodes.push_back(std::move(n));
    }
    proto::Layout layout = MakeLayout(endpoints, stripes, chain);
    c.epoch = layout.epoch();
    TALLY_RETURN_IF_ERROR(WriteLayoutFile(layout, c.layout_file));
    TALLY_RETURN_IF_ERROR(SpawnNodes(c, AllIds(c)));
    bool bind_failed = false;
    last = WaitServing(transport, c, AllIds(c), wait, &bind_failed);
    if (last.ok()) {
      // Epoch 0 agreed by the layout servers, then the primary sequencer
      // has bootstrapped from the log units: the cluster serves appends.
      auto committed = BootstrapCluster(transport, layout, std::min(wait, milliseconds(5000)));
      if (!committed.ok()) return committed.status().WithContext("bootstrapping the layout");
      TALLY_RETURN_IF_ERROR(WaitSequencer(transport, c, endpoints.front(), wait));
      return c;
    }
    if (!bind_failed) {
      return Status(last.code(), last.message() +
                                     "; the other nodes keep running: stop them with "
                                     "`tallyctl local down --dir " +
                                     dir + "`");
    }
    std::cerr << "tallyctl local: a picked port was taken (" << last.message()
              << "); picking new ports\n";
    KillAll(c);
    for (const auto& n : c.nodes) std::filesystem::remove_all(n.data_dir);
  }
  return last.WithContext("after " + std::to_string(kUpAttempts) + " attempts");
}

}  // namespace

LocalCommand::LocalCommand(CLI::App& app) {
  local_ = app.add_subcommand("local",
                              "run a development cluster of tally-server processes "
                              "on loopback (up, status, down, kill, start)");
  local_->require_subcommand(1);
  auto dir = [this](CLI::App* sub) {
    sub->add_option("--dir", flags_.dir, "the cluster's directory (layout, data, logs)")
        ->required();
  };
  up_ = local_->add_subcommand("up",
                               "start a local cluster (or restart a stopped one) and "
                               "wait until it serves");
  dir(up_);
  up_->add_option("--nodes", flags_.nodes, "number of nodes")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  up_->add_option("--stripes", flags_.stripes, "stripes of the layout (default: one per node)")
      ->check(CLI::Range(1, 1024));
  up_->add_option("--chain", flags_.chain, "replicas per stripe (default: min(3, nodes))")
      ->check(CLI::Range(1, 64));
  up_->add_option("--wait-s", flags_.wait_s, "seconds to wait for the cluster to serve")
      ->capture_default_str();
  up_->add_option("--segment-mb", flags_.server.segment_mb,
                  "segment file size of every log unit in MiB (default: tally-server's); "
                  "small segments let a trim free space sooner")
      ->check(CLI::Range(1, 4096));
  up_->add_flag("--no-heal", flags_.server.no_heal,
                "start the nodes with --no-heal: a removed node that returns stays out until "
                "`tallyctl node add` (by default the failure detectors bring it back)");
  up_->add_option("--exit-with", flags_.server.exit_with,
                  "the nodes stop (as on SIGTERM) when the process with this pid exits, also "
                  "those started again by `local start`: for test harnesses and scripts whose "
                  "cluster must not outlive them, even when they crash")
      ->check(CLI::PositiveNumber);
  up_->add_option("--write-engine", flags_.server.write_engine,
                  "how every log unit writes and syncs its segments: sync or io_uring "
                  "(tally-server --write-engine; default: tally-server's)")
      ->check([](const std::string& name) {
        auto engine = ParseWriteEngine(name);
        return engine.ok() ? std::string() : engine.status().message();
      });
  up_->add_option("--zero-ahead-mb", flags_.server.zero_ahead_mb,
                  "MiB of zeros every log unit keeps written past its open segment's end; 0 "
                  "turns zero-ahead off (tally-server --zero-ahead-mb; default: tally-server's)")
      ->check(CLI::Range(0, 4096));
  up_->add_option("--server-bin", flags_.server.server_bin,
                  "the tally-server binary (default: next to tallyctl)");
  status_ = local_->add_subcommand("status", "show each node: endpoint, pid, roles, up/down");
  dir(status_);
  down_ = local_->add_subcommand("down",
                                 "stop every node (SIGTERM, then SIGKILL after 10 s); "
                                 "data is kept");
  dir(down_);
  kill_ = local_->add_subcommand("kill", "SIGKILL one node (a crash)");
  kill_->add_option("NODE", flags_.node, "node id")->required();
  dir(kill_);
  start_ = local_->add_subcommand("start",
                                  "start one stopped node again on its data and port, "
                                  "and wait until it serves");
  start_->add_option("NODE", flags_.node, "node id")->required();
  start_->add_option("--wait-s", flags_.wait_s, "seconds to wait for the node to serve")
      ->capture_default_str();
  dir(start_);
}

bool LocalCommand::selected() const { return local_->parsed(); }

int LocalCommand::Run(bool json) {
  net::TcpTransport transport;
  const std::string& dir = flags_.dir;
  const milliseconds wait(uint64_t{flags_.wait_s} * 1000);

  if (up_->parsed()) {
    auto existing = ReadCluster(dir);
    if (existing.ok()) {
      std::string running;
      for (const auto& n : existing->nodes) {
        if (NodeProcessAlive(n)) running += (running.empty() ? "" : ", ") + std::to_string(n.id);
      }
      if (!running.empty()) {
        return LocalFail(
            json, FailedPrecondition(dir + " already has a running cluster (nodes " + running +
                                     " up); stop it with `tallyctl local down "
                                     "--dir " +
                                     dir + "` or use another --dir"));
      }
      // A stopped cluster: start every node again on its data.
      Status st = SpawnNodes(*existing, AllIds(*existing));
      bool bind_failed = false;
      if (st.ok()) st = WaitServing(transport, *existing, AllIds(*existing), wait, &bind_failed);
      if (!st.ok()) return LocalFail(json, st);
    } else if (existing.status().code() != Code::kNotFound) {
      return LocalFail(json, existing.status());
    } else {
      uint32_t chain = flags_.chain ? flags_.chain : std::min<uint32_t>(3, flags_.nodes);
      uint32_t stripes = flags_.stripes ? flags_.stripes : flags_.nodes;
      if (chain > flags_.nodes) {
        return LocalFail(
            json, InvalidArgument("--chain " + std::to_string(chain) + " exceeds --nodes " +
                                  std::to_string(flags_.nodes) + "; a chain holds each node once"));
      }
      LocalCluster settings = flags_.server;
      if (settings.server_bin.empty()) settings.server_bin = DefaultServerBinary();
      const std::string& bin = settings.server_bin;
      if (access(bin.c_str(), X_OK) != 0) {
        return LocalFail(json, NotFound("tally-server binary " + bin +
                                        " is missing or not executable; build it or pass "
                                        "--server-bin PATH"));
      }
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
      if (ec) return LocalFail(json, IoError("cannot create " + dir + ": " + ec.message()));
      settings.dir = std::filesystem::absolute(dir).string();
      auto created = CreateCluster(transport, settings, flags_.nodes, stripes, chain, wait);
      if (!created.ok()) return LocalFail(json, created.status());
      existing = std::move(created);
    }
    PrintNodes(transport, *existing, json);
    if (!json) {
      std::cout << "layout: " << existing->layout_file << "\n"
                << "export TALLY_ENDPOINTS=" << existing->Endpoints() << "\n";
    }
    return 0;
  }

  auto cluster = ReadCluster(dir);
  if (!cluster.ok()) return LocalFail(json, cluster.status());
  LocalCluster& c = *cluster;

  if (status_->parsed()) {
    PrintNodes(transport, c, json);
    return 0;
  }
  if (down_->parsed()) {
    size_t stopped = 0;
    for (const auto& n : c.nodes) stopped += SignalNode(n, SIGTERM) ? 1 : 0;
    auto deadline = Clock::now() + kStopGrace;
    std::string killed;
    for (const auto& n : c.nodes) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      if (WaitNodeGone(n, std::max(left, milliseconds(0)))) continue;
      SignalNode(n, SIGKILL);
      killed += (killed.empty() ? "" : ", ") + std::to_string(n.id);
    }
    std::string stuck;
    for (const auto& n : c.nodes) {
      if (!WaitNodeGone(n, kKillWait)) stuck += " " + std::to_string(n.pid);
    }
    if (!stuck.empty()) {
      return LocalFail(json, Internal("processes still running after SIGKILL (pids" + stuck +
                                      "); check them with ps"));
    }
    if (json) {
      std::cout << JsonObject().Add("stopped", uint64_t{stopped}).Add("killed", killed).str()
                << "\n";
    } else {
      std::cout << "stopped " << stopped << " node(s)"
                << (killed.empty() ? "" : " (SIGKILL after 10 s: nodes " + killed + ")")
                << "; data kept in " << c.dir << "\n";
    }
    return 0;
  }

  LocalNode* n = c.Find(flags_.node);
  if (n == nullptr) {
    return LocalFail(json, NotFound("no node " + std::to_string(flags_.node) + " in " + dir +
                                    "; `tallyctl local status --dir " + dir + "` lists the nodes"));
  }
  if (kill_->parsed()) {
    if (!SignalNode(*n, SIGKILL)) {
      return LocalFail(json, FailedPrecondition(NodeLabel(*n) + " is not running"));
    }
    // Returns only once the process has exited entirely and released its
    // data dir, so that a `start` right after it can take the data dir.
    if (!WaitNodeGone(*n, kKillWait)) {
      return LocalFail(
          json, Internal(NodeLabel(*n) + " (pid " + std::to_string(n->pid) + ") has not exited " +
                         std::to_string(kKillWait.count() / 1000) + " s after SIGKILL"));
    }
    std::cout << (json ? JsonObject().Add("killed", n->id).str()
                       : "killed node " + std::to_string(n->id) + " (pid " +
                             std::to_string(n->pid) + ")")
              << "\n";
    return 0;
  }
  if (start_->parsed()) {
    if (NodeProcessAlive(*n)) {
      return LocalFail(json, FailedPrecondition(NodeLabel(*n) + " is already running (pid " +
                                                std::to_string(n->pid) + ")"));
    }
    Status st = SpawnNodes(c, {n->id});
    bool bind_failed = false;
    if (st.ok()) st = WaitServing(transport, c, {n->id}, wait, &bind_failed);
    if (!st.ok()) {
      if (bind_failed) {
        st = st.WithContext("its port is taken by another process; free it and retry");
      }
      return LocalFail(json, st);
    }
    std::cout << (json ? JsonObject().Add("started", n->id).Add("pid", uint64_t(n->pid)).str()
                       : "started " + NodeLabel(*n) + ", pid " + std::to_string(n->pid))
              << "\n";
    return 0;
  }
  return 2;
}

}  // namespace tally::ctl
