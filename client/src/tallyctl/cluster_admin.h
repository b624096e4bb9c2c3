#pragma once

// `tallyctl cluster`: administering the cluster's layout through its layout
// servers (Paxos, docs/layout.md). Subcommands: cluster bootstrap, node
// remove, node add (healing: state transfer, then the new layout).

#include <CLI/CLI.hpp>
#include <chrono>
#include <optional>
#include <string>

#include "ctl.h"
#include "tally/base/result.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"

namespace tally::ctl {

// Agrees on `layout` as the first layout of a fresh cluster: runs Paxos for
// layout.epoch() against layout.layout_servers() and returns the layout
// committed for that epoch. Idempotent: bootstrapping again with the same
// layout succeeds. Blocks. Errors: InvalidArgument (invalid layout, no
// layout servers), FailedPrecondition (that epoch, or a later one, is
// already committed with another layout: the cluster is bootstrapped),
// Unavailable (no majority of layout servers answered).
Result<proto::Layout> BootstrapCluster(net::Transport& transport, const proto::Layout& layout,
                                       std::chrono::milliseconds rpc_timeout);

class ClusterAdminCommands {
 public:
  // Adds `cluster` and its subcommands to `app`. `g` must outlive this.
  ClusterAdminCommands(CLI::App& app, const Globals& g);

  // The exit code of the chosen subcommand, or nullopt if none was chosen.
  std::optional<int> Run();

 private:
  int Bootstrap();
  int RemoveNode();
  int AddNode();

  const Globals& g_;
  CLI::App* bootstrap_ = nullptr;
  CLI::App* node_remove_ = nullptr;
  CLI::App* node_add_ = nullptr;
  std::string layout_file_;
  std::string node_;
  bool wipe_ = false;
};

}  // namespace tally::ctl
