#include "cluster_admin.h"

#include <iostream>
#include <random>

#include "tally/base/threads.h"
#include "tally/client/layout.h"
#include "tally/log/layout_proposer.h"
#include "tally/net/tcp_transport.h"

namespace tally::ctl {

Result<proto::Layout> BootstrapCluster(net::Transport& transport, const proto::Layout& layout,
                                       std::chrono::milliseconds rpc_timeout) {
  TALLY_RETURN_IF_ERROR(client::Layout::FromProto(layout).status());
  if (layout.layout_servers_size() == 0) {
    return InvalidArgument(
        "the layout lists no layout servers (\"layoutServers\"); name the nodes started with "
        "--roles ...,layout");
  }
  std::vector<std::string> servers(layout.layout_servers().begin(), layout.layout_servers().end());
  // Ranks break ties by node id: a random one keeps two tallyctl runs apart.
  const NodeId proposer_id(std::random_device{}() | 1u);
  log::LayoutProposer proposer(&transport, servers, proposer_id);
  log::ProposeOptions options;
  options.rpc_timeout = rpc_timeout;
  auto committed = WaitForValue<Result<proto::Layout>>(
      *SystemThreads(), [&](std::function<void(Result<proto::Layout>)> done) {
        proposer.ProposeLayout(layout, options, std::move(done));
      });
  if (!committed.ok()) {
    if (committed.status().code() == Code::kWrongEpoch) {
      return FailedPrecondition(
          "the cluster is already bootstrapped: " + committed.status().message() +
          "; `tallyctl layout` shows the layout in force");
    }
    return committed.status().WithContext("bootstrapping epoch " + std::to_string(layout.epoch()));
  }
  if (committed->SerializeAsString() != layout.SerializeAsString()) {
    return FailedPrecondition("epoch " + std::to_string(layout.epoch()) +
                              " is already committed with another layout; the cluster is "
                              "bootstrapped (`tallyctl layout` shows it)");
  }
  return *committed;
}

ClusterAdminCommands::ClusterAdminCommands(CLI::App& app, const Globals& g) : g_(g) {
  CLI::App* cluster = app.add_subcommand("cluster", "administer the cluster's layout (bootstrap)");
  cluster->require_subcommand(1);
  bootstrap_ = cluster->add_subcommand(
      "bootstrap",
      "form a fresh cluster: agree on its first layout (epoch 0) among the layout servers it "
      "lists, by Paxos; safe to repeat with the same layout");
  bootstrap_->add_option("--layout", layout_file_, "the layout, a JSON tally.proto.Layout")
      ->required();
}

std::optional<int> ClusterAdminCommands::Run() {
  if (*bootstrap_) return Bootstrap();
  return std::nullopt;
}

int ClusterAdminCommands::Bootstrap() {
  auto layout = client::Layout::FromFile(layout_file_);
  if (!layout.ok()) return Fail(g_, layout.status());
  net::TcpTransport transport;
  auto committed =
      BootstrapCluster(transport, layout->proto(), std::chrono::milliseconds(g_.timeout_ms));
  if (!committed.ok()) return Fail(g_, committed.status());
  if (g_.json()) {
    std::cout << "{\"epoch\":" << committed->epoch()
              << ",\"layout_servers\":" << committed->layout_servers_size() << "}\n";
  } else {
    std::cout << "bootstrapped: epoch " << committed->epoch() << " committed on a majority of "
              << committed->layout_servers_size() << " layout servers\n";
  }
  return kExitOk;
}

}  // namespace tally::ctl
