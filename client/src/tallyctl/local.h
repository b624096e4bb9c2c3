#pragma once

// `tallyctl local`: a development cluster of tally-server processes on
// loopback, like etcd's or CockroachDB's local clusters. Subcommands: up,
// status, down, kill NODE, start NODE (docs/cli.md). State lives in --dir
// (local_cluster.h).

#include <cstdint>
#include <string>

#include "local_cluster.h"

namespace CLI {
class App;
}

namespace tally::ctl {

class LocalCommand {
 public:
  // Adds `local` and its subcommands to `app`. `app` must outlive this.
  explicit LocalCommand(CLI::App& app);

  // Whether the command line chose `local` (valid after parsing).
  bool selected() const;

  // Runs the chosen subcommand; `json` selects --output json. Returns the
  // exit code (0 ok, 1 failed).
  int Run(bool json);

 private:
  struct Flags {
    std::string dir;
    uint32_t nodes = 3;
    uint32_t stripes = 0;  // 0: one per node
    uint32_t chain = 0;    // 0: min(3, nodes)
    uint64_t node = 0;
    uint32_t wait_s = 30;
    // `up` of a new cluster: server_bin and the tally-server flags
    // (segment_mb, no_heal, exit_with, write_engine, zero_ahead_mb).
    LocalCluster server;
  };
  CLI::App* local_ = nullptr;
  CLI::App* up_ = nullptr;
  CLI::App* status_ = nullptr;
  CLI::App* down_ = nullptr;
  CLI::App* kill_ = nullptr;
  CLI::App* start_ = nullptr;
  Flags flags_;
};

}  // namespace tally::ctl
