#pragma once

// One tally-server node: the roles it hosts (log unit, sequencer), served
// over one transport, plus layout.get answering the layout the node was
// started with.

#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace rocksdb {
class Env;
}

#include "tally/base/env.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/base/threads.h"
#include "tally/log/layout_server.h"
#include "tally/log/log_unit.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"

namespace tally::server {

class SequencerRole;
class FailureDetector;

struct Roles {
  bool log = true;
  bool sequencer = false;
  bool layout = false;  // a layout server (Paxos acceptor, docs/layout.md)
};

// Parses a comma list of "log", "sequencer" and "layout" (e.g.
// "log,layout,sequencer").
// Errors: InvalidArgument naming an unknown role, or for an empty list.
Result<Roles> ParseRoles(std::string_view list);
// "log,sequencer" and the like.
std::string RolesString(const Roles& roles);

struct NodeOptions {
  NodeId id{0};
  std::string listen = "127.0.0.1:7400";
  std::string data_dir;
  uint64_t segment_bytes = 64ull << 20;
  // SegmentStoreOptions::zero_ahead_bytes of the log unit (0: off).
  uint64_t zero_ahead_bytes = 8ull << 20;
  uint32_t net_threads = 1;
  Roles roles;
  // The static layout (--layout). Required by the sequencer role.
  std::optional<proto::Layout> layout;

  // Seams for the deterministic simulation (docs/simulation.md); the
  // defaults are the real OS. Not owned.
  Env env{};                             // the log unit's files, clock, randomness
  rocksdb::Env* metadata_env = nullptr;  // the log unit's RocksDB env
  Threads* threads = nullptr;            // the sequencer bootstrap's thread and waits
  // Run the failure detector (layout role, layout with layout servers).
  bool failure_detector = true;
  // The failure detector brings removed nodes back when they answer again
  // (healing, docs/layout.md). tally-server turns it on unless --no-heal.
  bool heal = false;
  // True: the log unit writes, syncs and answers on the calling thread (no
  // writer or I/O threads), as a simulation needs.
  bool inline_io = false;
};

class Node {
 public:
  // Recovers the data directory (log role), starts serving, then starts the
  // sequencer's bootstrap in the background (sequencer role). `transport`
  // must outlive the node. Errors: IoError, Corruption (metadata),
  // InvalidArgument (sequencer role without a layout), IoError/Unavailable
  // (cannot bind `listen`).
  static Result<std::unique_ptr<Node>> Start(NodeOptions options, net::Transport* transport);

  // Stops serving new requests, stops the bootstrap, waits for pending
  // syncs, closes storage.
  ~Node();

  std::string endpoint() const { return server_->endpoint(); }
  // The layout role's server, or nullptr.
  log::LayoutServer* layout_server() { return layout_server_.get(); }

 private:
  Node();
  NodeOptions options_;
  std::unique_ptr<log::LogUnit> log_unit_;
  std::unique_ptr<SequencerRole> sequencer_;
  std::unique_ptr<log::LayoutServer> layout_server_;
  std::unique_ptr<FailureDetector> detector_;
  net::ServiceRegistry registry_;
  std::unique_ptr<net::Server> server_;
};

}  // namespace tally::server
