// tally-server: runs one Tally node.

#include <poll.h>
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <thread>

#include "layout_file.h"
#include "node.h"
#include "tally/base/file_lock.h"
#include "tally/base/posix_env.h"
#include "tally/net/tcp_transport.h"

namespace {
// Set once the main thread begins to stop (read by the --exit-with watcher).
std::atomic<bool> stopping{false};
}  // namespace

int main(int argc, char** argv) {
  tally::server::NodeOptions options;
  uint64_t node_id = 0;
  std::string ready_file;
  std::string log_level = "info";
  uint64_t segment_mb = 64;
  uint64_t zero_ahead_mb = 8;
  std::string roles = "log";
  std::string layout_file;
  std::string write_engine(tally::WriteEngineName(tally::WriteEngine::kSync));
  CLI::App app{"tally-server: one node of a Tally cluster (log unit, sequencer, layout server)"};
  app.add_option("--node-id", node_id, "this node's id")->required();
  app.add_option("--listen", options.listen, "address to serve on, HOST:PORT (port 0: any free)")
      ->capture_default_str();
  app.add_option("--data-dir", options.data_dir, "directory for this node's durable state")
      ->required();
  app.add_option("--ready-file", ready_file,
                 "once serving, write the bound HOST:PORT to this file (atomically)");
  app.add_option("--segment-mb", segment_mb, "segment file size in MiB")->capture_default_str();
  app.add_option("--zero-ahead-mb", zero_ahead_mb,
                 "MiB of zeros kept written and synced past the open segment's end, so that "
                 "group commits overwrite allocated blocks and their fdatasync needs no "
                 "journal commit; 0 turns it off")
      ->capture_default_str();
  app.add_option("--write-engine", write_engine,
                 "how the log unit writes and syncs its segments: sync (pwritev + fdatasync on "
                 "its writer thread) or io_uring (linked write and fsync SQEs)")
      ->capture_default_str();
  app.add_option("--roles", roles,
                 "roles this node hosts: a comma list of log, sequencer, layout (a Paxos layout "
                 "server, docs/layout.md)")
      ->capture_default_str();
  app.add_option("--layout", layout_file,
                 "the cluster layout, a JSON tally.proto.Layout (required for the sequencer role)");
  app.add_option("--net-threads", options.net_threads, "network threads")->capture_default_str();
  bool no_heal = false;
  app.add_flag("--no-heal", no_heal,
               "with the layout role: do not bring removed nodes back by themselves when they "
               "answer again (then only `tallyctl node add` does)");
  int64_t exit_with = 0;
  app.add_option("--exit-with", exit_with,
                 "stop (as on SIGTERM) when the process with this pid exits: for test harnesses "
                 "and scripts whose nodes must not outlive them, even when they crash")
      ->check(CLI::PositiveNumber);
  app.add_option("--log-level", log_level, "trace|debug|info|warn|error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  options.id = tally::NodeId(node_id);
  options.segment_bytes = segment_mb << 20;
  options.zero_ahead_bytes = zero_ahead_mb << 20;
  options.heal = !no_heal;
  auto engine = tally::ParseWriteEngine(write_engine);
  if (!engine.ok()) {
    std::cerr << "tally-server: --write-engine: " << engine.status().message() << "\n";
    return 2;
  }
  // Lives until exit: the node's files keep a pointer to it.
  static tally::PosixFileSystem segment_fs(*engine);
  options.env = tally::DefaultEnv();
  options.env.fs = &segment_fs;
  auto parsed_roles = tally::server::ParseRoles(roles);
  if (!parsed_roles.ok()) {
    std::cerr << "tally-server: " << parsed_roles.status().message() << "\n";
    return 2;
  }
  options.roles = *parsed_roles;
  if (options.roles.sequencer && layout_file.empty()) {
    std::cerr << "tally-server: the sequencer role needs the layout to bootstrap from; pass "
                 "--layout FILE\n";
    return 2;
  }

  // Logs go to stderr.
  spdlog::set_default_logger(std::make_shared<spdlog::logger>(
      "tally", std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  spdlog::set_level(spdlog::level::from_str(log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [node " + std::to_string(node_id) + "] %v");

  if (!layout_file.empty()) {
    auto layout = tally::server::LoadLayoutFile(layout_file);
    if (!layout.ok()) {
      spdlog::error("cannot start: {}", layout.status().ToString());
      return 1;
    }
    options.layout = std::move(*layout);
  }

  // A pidfd of the owner: readable once it exits (Linux 5.3+).
  int owner_fd = -1;
  if (exit_with > 0) {
    owner_fd = static_cast<int>(syscall(SYS_pidfd_open, static_cast<pid_t>(exit_with), 0));
    if (owner_fd < 0) {
      spdlog::error("cannot start: --exit-with {}: {}", exit_with,
                    errno == ESRCH ? "no such process (it already exited)"
                                   : std::string("pidfd_open: ") + std::strerror(errno));
      return 1;
    }
  }

  // Block the stop signals in every thread; the main thread waits for them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  tally::net::TcpOptions topts;
  topts.io_threads = static_cast<int>(options.net_threads);
  auto transport = std::make_unique<tally::net::TcpTransport>(topts);
  auto node = tally::server::Node::Start(options, transport.get());
  if (!node.ok()) {
    // A RocksDB store of the data dir could not be locked: say who has it.
    if (auto held = tally::FindHeldLock(options.data_dir)) {
      std::ifstream comm_file("/proc/" + std::to_string(held->pid) + "/comm");
      std::string comm;
      std::getline(comm_file, comm);
      spdlog::error(
          "cannot start: the data dir {} is in use by another {} (pid {} holds its lock {}); "
          "only one tally-server may use a data dir: stop that process, or pass another "
          "--data-dir ({})",
          options.data_dir,
          comm.empty() || comm == "tally-server" ? "tally-server process"
                                                 : "process (" + comm + ")",
          held->pid, held->path, node.status().ToString());
      return 1;
    }
    spdlog::error("cannot start: {}", node.status().ToString());
    return 1;
  }
  std::string endpoint = (*node)->endpoint();
  spdlog::info("serving {} on {} (data in {}{})", tally::server::RolesString(options.roles),
               endpoint, options.data_dir,
               options.layout ? ", layout epoch " + std::to_string(options.layout->epoch()) : "");
  if (!ready_file.empty()) {
    std::string tmp = ready_file + ".tmp";
    std::ofstream(tmp) << endpoint << "\n";
    std::rename(tmp.c_str(), ready_file.c_str());
  }

  if (owner_fd >= 0) {
    // Waits for the owner's exit, then stops the node the way SIGTERM does.
    // Detached: it blocks until then, and the process ends without it.
    std::thread([owner_fd, exit_with] {
      pollfd p{owner_fd, POLLIN, 0};
      while (poll(&p, 1, -1) < 0 && errno == EINTR) {
      }
      if (stopping.load()) return;  // main is already tearing down
      spdlog::warn("process {} (--exit-with) exited; stopping", exit_with);
      kill(getpid(), SIGTERM);
    }).detach();
  }

  int sig = 0;
  sigwait(&stop_signals, &sig);
  stopping.store(true);
  spdlog::info("received {}; finishing pending syncs and stopping", strsignal(sig));
  node->reset();
  transport.reset();
  spdlog::info("stopped cleanly");
  return 0;
}
