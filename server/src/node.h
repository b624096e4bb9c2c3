#pragma once

// One tally-server node: the roles it hosts, served over one transport.
// For now the node hosts a log unit; the sequencer and layout roles join it.

#include <memory>
#include <string>

#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/log/log_unit.h"
#include "tally/net/transport.h"

namespace tally::server {

struct NodeOptions {
  NodeId id{0};
  std::string listen = "127.0.0.1:7400";
  std::string data_dir;
  uint64_t segment_bytes = 64ull << 20;
  uint32_t net_threads = 1;
};

class Node {
 public:
  // Recovers the data directory and starts serving. Errors: IoError,
  // Corruption (metadata), Unavailable (cannot bind `listen`).
  static Result<std::unique_ptr<Node>> Start(NodeOptions options, net::Transport* transport);

  // Stops serving new requests, waits for pending syncs, closes storage.
  ~Node();

  std::string endpoint() const { return server_->endpoint(); }

 private:
  Node() = default;
  NodeOptions options_;
  std::unique_ptr<log::LogUnit> log_unit_;
  net::ServiceRegistry registry_;
  std::unique_ptr<net::Server> server_;
};

}  // namespace tally::server
