#include "cluster_admin.h"

#include <iostream>
#include <random>

#include "tally/base/threads.h"
#include "tally/client/client.h"
#include "tally/client/layout.h"
#include "tally/client/reconfigure.h"
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

  CLI::App* node = app.add_subcommand("node", "change the cluster's membership (remove)");
  node->require_subcommand(1);
  node_remove_ = node->add_subcommand(
      "remove",
      "take a node out of the layout: seal the next epoch on the remaining log units and agree "
      "on the layout without it (its chains shrink; if it was the primary sequencer, the next "
      "standby takes over, rebuilt from the log units)");
  node_remove_->add_option("NODE", node_, "the node: its id (as in `tallyctl layout`) or endpoint")
      ->required();
}

std::optional<int> ClusterAdminCommands::Run() {
  if (*bootstrap_) return Bootstrap();
  if (*node_remove_) return RemoveNode();
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

int ClusterAdminCommands::RemoveNode() {
  auto endpoints = g_.EndpointList();
  if (endpoints.empty()) {
    return Fail(g_, InvalidArgument("no endpoints; pass --endpoints HOST:PORT,... or set "
                                    "TALLY_ENDPOINTS"));
  }
  net::TcpTransport transport;
  const auto timeout = std::chrono::milliseconds(g_.timeout_ms);
  // The newest layout: ask the given endpoints, then its layout servers.
  client::ClientOptions co;
  co.transport = &transport;
  co.endpoints = endpoints;
  co.rpc_timeout = timeout;
  auto c = client::Client::Create(std::move(co));
  if (!c.ok()) return Fail(g_, c.status());
  proto::Layout current = (*c)->layout()->proto();
  if (current.layout_servers_size() == 0) {
    return Fail(g_, FailedPrecondition("the layout lists no layout servers, so it cannot change; "
                                       "start the nodes with --roles ...,layout"));
  }
  std::vector<std::string> servers(current.layout_servers().begin(),
                                   current.layout_servers().end());
  auto newest = client::FetchNewestLayout(transport, servers, timeout);
  if (newest.ok() && newest->epoch() > current.epoch()) current = *newest;
  // NODE may be an id from the layout's node list.
  std::string endpoint = node_;
  bool known = false;
  for (const auto& n : current.nodes()) {
    if (std::to_string(n.id()) == node_) endpoint = n.endpoint();
    known |= std::to_string(n.id()) == node_ || n.endpoint() == node_;
  }
  auto next = client::LayoutWithout(current, endpoint);
  if (!next.ok() && next.status().code() == Code::kNotFound && known) {
    // Already out (e.g. the failure detector removed it): nothing to do.
    if (g_.json()) {
      std::cout << "{\"removed\":\"" << endpoint << "\",\"epoch\":" << current.epoch()
                << ",\"already\":true}\n";
    } else {
      std::cout << endpoint << " is already out of the layout (epoch " << current.epoch() << ")\n";
    }
    return kExitOk;
  }
  if (!next.ok()) return Fail(g_, next.status());
  client::ReconfigureOptions ro;
  ro.rpc_timeout = timeout;
  ro.proposer = NodeId(std::random_device{}() | 1u);
  auto committed = client::Reconfigure(transport, *next, ro);
  if (!committed.ok()) return Fail(g_, committed.status());
  if (committed->SerializeAsString() != next->SerializeAsString()) {
    return Fail(g_, FailedPrecondition(
                        "another reconfiguration won epoch " + std::to_string(committed->epoch()) +
                        "; check `tallyctl layout` and retry if the node is still in it"));
  }
  if (g_.json()) {
    std::cout << "{\"removed\":\"" << endpoint << "\",\"epoch\":" << committed->epoch() << "}\n";
  } else {
    std::cout << "removed " << endpoint << ": epoch " << committed->epoch()
              << " committed (sequencer " << committed->sequencers(0) << ")\n";
  }
  return kExitOk;
}

}  // namespace tally::ctl
