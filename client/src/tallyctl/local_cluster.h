#pragma once

// The state of a `tallyctl local` cluster on disk, and the process plumbing
// behind it. DIR holds:
//   cluster.json    the nodes: id, endpoint, roles, pid, data dir, log file
//   layout.json     the static layout every node is started with
//   node-<id>/      a node's data dir;  node-<id>.log  its stdout+stderr
// Processes are found by the pid recorded in cluster.json (the tally-server
// itself: SpawnNode forks and execs it directly), never by name, and a pid
// counts as the node only while /proc/<pid>/cmdline names its data dir (a
// recycled pid is not signalled). A node is gone only once every thread of
// its process has exited, so that its files, and the locks on them, are
// released.

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tally/base/result.h"
#include "tally/proto/layout.pb.h"

namespace tally::ctl {

struct LocalNode {
  uint64_t id = 0;
  std::string endpoint;            // 127.0.0.1:PORT
  std::vector<std::string> roles;  // "log", "sequencer"
  int64_t pid = 0;                 // last started process (0: never)
  std::string data_dir;
  std::string log_file;
  bool sequencer() const;
  bool layout() const;
};

struct LocalCluster {
  std::string dir;
  std::string server_bin;      // the tally-server the nodes run
  std::string layout_file;     // DIR/layout.json
  uint64_t epoch = 0;          // of the layout
  uint64_t segment_mb = 0;     // tally-server --segment-mb (0: the server's default)
  bool no_heal = false;        // tally-server --no-heal
  int64_t exit_with = 0;       // tally-server --exit-with (0: none)
  std::string write_engine;    // tally-server --write-engine ("": the server's default)
  int64_t zero_ahead_mb = -1;  // tally-server --zero-ahead-mb (-1: the server's default)
  std::vector<LocalNode> nodes;

  // The node with `id`, or nullptr.
  LocalNode* Find(uint64_t id);
  const LocalNode* Find(uint64_t id) const;
  // "a:1,b:2": every node's endpoint.
  std::string Endpoints() const;
};

std::string ClusterFile(const std::string& dir);

// Reads DIR/cluster.json. Errors: NotFound (no cluster in DIR, suggesting
// `local up`), Malformed (naming the file).
Result<LocalCluster> ReadCluster(const std::string& dir);

// Writes DIR/cluster.json atomically (temporary file + rename).
Status WriteCluster(const LocalCluster& cluster);

// A static layout for `endpoints` (node i+1 at endpoints[i]): epoch 0,
// the sequencer on node 1, one open-ended segment of `stripes` stripes whose
// chains of `chain` units rotate over the nodes (stripe s starts at node
// s % N, so heads differ).
proto::Layout MakeLayout(const std::vector<std::string>& endpoints, uint32_t stripes,
                         uint32_t chain);

// Writes `layout` as JSON (protobuf mapping) to `path`, atomically.
Status WriteLayoutFile(const proto::Layout& layout, const std::string& path);

// A loopback port free right now (bind port 0, read it, close). Another
// process may take it before we use it; callers retry on bind failure.
Result<uint16_t> PickFreePort();

// tally-server next to this executable (/proc/self/exe's directory).
std::string DefaultServerBinary();

// Starts `node` detached (own session, stdin /dev/null, stdout and stderr
// appended to its log file) with its recorded endpoint, data dir, roles and
// the cluster's layout (and segment size, if set); `ready_file` is removed
// first and written by the node once it serves. Returns the pid. Errors: IoError (fork failed).
Result<pid_t> SpawnNode(const LocalCluster& cluster, const LocalNode& node,
                        const std::string& ready_file);

// True while `node.pid` is a live process running this node (not a zombie,
// not exiting).
bool NodeProcessAlive(const LocalNode& node);

// Sends `sig` to the node's process if NodeProcessAlive (through a pidfd, so
// never to a process that took the pid over meanwhile). Returns whether it did.
bool SignalNode(const LocalNode& node, int sig);

// Waits up to `timeout` for the node's process to be gone: every thread of
// it exited, its files closed and their locks dropped (a zombie main thread
// is not enough: after SIGKILL other threads may still be tearing down and
// holding the data dir). Reaps it if it is our child. Returns whether it is
// gone.
bool WaitNodeGone(const LocalNode& node, std::chrono::milliseconds timeout);

// Waits up to `timeout` until no process holds a lock on a file named LOCK in
// the node's data dir (the RocksDB stores a tally-server keeps open), i.e.
// until a new tally-server can open it. Errors: FailedPrecondition naming the
// holder's pid, when another process still uses the data dir.
Status WaitDataDirFree(const LocalNode& node, std::chrono::milliseconds timeout);

// The last non-empty line of `path` ("" if none), for error messages.
std::string LastLogLine(const std::string& path);

}  // namespace tally::ctl
