#include "cluster_admin.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>

#include "tally/base/threads.h"
#include "tally/client/client.h"
#include "tally/client/layout.h"
#include "tally/client/log_unit_client.h"
#include "tally/client/node_add.h"
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

  CLI::App* node = app.add_subcommand("node", "change the cluster's membership (remove, add)");
  node->require_subcommand(1);
  node_remove_ = node->add_subcommand(
      "remove",
      "take a node out of the layout: seal the next epoch on the remaining log units and agree "
      "on the layout without it (its chains shrink; if it was the primary sequencer, the next "
      "standby takes over, rebuilt from the log units)");
  node_remove_->add_option("NODE", node_, "the node: its id (as in `tallyctl layout`) or endpoint")
      ->required();
  node_add_ = node->add_subcommand(
      "add",
      "bring a running node (back) into the layout: copy its chains' data to it from each chain's "
      "tail while writes go on, seal the next epoch, copy the rest, then agree on the layout with "
      "it at the tail of every short chain and as a standby sequencer. The node must hold no "
      "data that differs from the chains (see --wipe). The failure detector does this by itself "
      "when a removed node answers again");
  node_add_->add_option("NODE", node_, "the node: its id (as in `tallyctl layout`) or endpoint")
      ->required();
  node_add_->add_flag("--wipe", wipe_,
                      "if the node holds entries the chains never acknowledged (divergent data), "
                      "wipe its log unit (log.reset) and copy everything afresh instead of "
                      "failing; only a node in no chain of the layout can be wiped");
}

std::optional<int> ClusterAdminCommands::Run() {
  if (*bootstrap_) return Bootstrap();
  if (*node_remove_) return RemoveNode();
  if (*node_add_) return AddNode();
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

namespace {

// The newest committed layout: ask `endpoints`, then its layout servers.
Result<proto::Layout> NewestLayout(net::Transport& transport,
                                   const std::vector<std::string>& endpoints,
                                   std::chrono::milliseconds timeout) {
  if (endpoints.empty()) {
    return InvalidArgument("no endpoints; pass --endpoints HOST:PORT,... or set TALLY_ENDPOINTS");
  }
  client::ClientOptions co;
  co.transport = &transport;
  co.endpoints = endpoints;
  co.rpc_timeout = timeout;
  TALLY_ASSIGN_OR_RETURN(auto c, client::Client::Create(std::move(co)));
  proto::Layout current = c->layout()->proto();
  if (current.layout_servers_size() == 0) {
    return FailedPrecondition(
        "the layout lists no layout servers, so it cannot change; start the nodes with --roles "
        "...,layout");
  }
  std::vector<std::string> servers(current.layout_servers().begin(),
                                   current.layout_servers().end());
  auto newest = client::FetchNewestLayout(transport, servers, timeout);
  if (newest.ok() && newest->epoch() > current.epoch()) current = *newest;
  return current;
}

// NODE may be an id from the layout's node list or an endpoint; `known`
// says whether the layout's node list names it.
std::string ResolveNode(const proto::Layout& layout, const std::string& node, bool* known) {
  std::string endpoint = node;
  *known = false;
  for (const auto& n : layout.nodes()) {
    if (std::to_string(n.id()) == node) endpoint = n.endpoint();
    *known |= std::to_string(n.id()) == node || n.endpoint() == node;
  }
  return endpoint;
}

// The newest layout and the node a `node add|remove` names in it.
struct NodeTarget {
  proto::Layout current;
  std::string endpoint;
  bool known = false;  // the layout's node list names it
};

Result<NodeTarget> FindNode(net::Transport& transport, const std::vector<std::string>& endpoints,
                            const std::string& node, std::chrono::milliseconds timeout) {
  NodeTarget t;
  TALLY_ASSIGN_OR_RETURN(t.current, NewestLayout(transport, endpoints, timeout));
  t.endpoint = ResolveNode(t.current, node, &t.known);
  return t;
}

// Prints that the layout already is what was asked (`key` is "added" or
// "removed"; `text` ends the text line); exit 0.
int NothingToDo(bool json, const std::string& key, const NodeTarget& t, const std::string& text) {
  if (json) {
    std::cout << "{\"" << key << "\":\"" << t.endpoint << "\",\"epoch\":" << t.current.epoch()
              << ",\"already\":true}\n";
  } else {
    std::cout << t.endpoint << " is already " << text << " (epoch " << t.current.epoch() << ")\n";
  }
  return kExitOk;
}

}  // namespace

int ClusterAdminCommands::RemoveNode() {
  net::TcpTransport transport;
  const auto timeout = std::chrono::milliseconds(g_.timeout_ms);
  auto target = FindNode(transport, g_.EndpointList(), node_, timeout);
  if (!target.ok()) return Fail(g_, target.status());
  const proto::Layout& current = target->current;
  const std::string& endpoint = target->endpoint;
  auto next = client::LayoutWithout(current, endpoint);
  if (!next.ok() && next.status().code() == Code::kNotFound && target->known) {
    // Already out (e.g. the failure detector removed it): nothing to do.
    return NothingToDo(g_.json(), "removed", *target, "out of the layout");
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

namespace {

// Prints progress lines of the copies to stderr, at most every 500 ms per
// chain and phase. Thread-safe (one copying thread per chain).
class ProgressPrinter {
 public:
  explicit ProgressPrinter(std::string target)
      : target_(std::move(target)), start_(std::chrono::steady_clock::now()) {}

  void operator()(int stripe, const char* phase, const std::string& source,
                  const client::TransferStats& s, bool done) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mu_);
    auto& last = last_[{stripe, phase}];
    if (!done && now - last < std::chrono::milliseconds(500)) return;
    last = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double mbps = secs > 0 ? static_cast<double>(s.bytes) / 1e6 / secs : 0.0;
    char rate[32];
    std::snprintf(rate, sizeof rate, "%.1f", mbps);
    std::cerr << "stripe " << stripe << " " << phase << ": copying " << source << " -> " << target_
              << ": " << s.entries << " entries (" << s.holes << " holes), " << s.bytes
              << " bytes, " << s.skipped << " already there, up to address " << s.next << ", "
              << rate << " MB/s" << (done ? " (done)" : "") << "\n";
  }

 private:
  const std::string target_;
  const std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::map<std::pair<int, std::string>, std::chrono::steady_clock::time_point>
      last_;  // GUARDED_BY(mu_)
};

}  // namespace

int ClusterAdminCommands::AddNode() {
  net::TcpTransport transport;
  const auto timeout = std::chrono::milliseconds(g_.timeout_ms);
  auto target = FindNode(transport, g_.EndpointList(), node_, timeout);
  if (!target.ok()) return Fail(g_, target.status());
  const proto::Layout& current = target->current;
  const std::string& endpoint = target->endpoint;
  if (!target->known && endpoint.find(':') == std::string::npos) {
    return Fail(g_, NotFound("the layout of epoch " + std::to_string(current.epoch()) +
                             " lists no node " + node_ + "; name a new node by its HOST:PORT"));
  }
  auto printer = std::make_shared<ProgressPrinter>(endpoint);
  client::AddNodeOptions options;
  options.rpc_timeout = timeout;
  options.proposer = NodeId(std::random_device{}() | 1u);
  options.wipe_divergent = wipe_;
  options.progress = [printer](int stripe, const char* phase, const std::string& source,
                               const client::TransferStats& s,
                               bool done) { (*printer)(stripe, phase, source, s, done); };
  auto added = client::AddNode(transport, current, endpoint, options);
  if (!added.ok() && added.status().code() == Code::kNotFound) {
    return NothingToDo(g_.json(), "added", *target, "in the layout");
  }
  if (!added.ok()) return Fail(g_, added.status());
  if (g_.json()) {
    std::cout << "{\"added\":\"" << endpoint << "\",\"epoch\":" << added->committed.epoch()
              << ",\"entries\":" << added->copied.entries << ",\"bytes\":" << added->copied.bytes
              << ",\"wiped\":" << (added->wiped ? "true" : "false") << "}\n";
  } else {
    if (added->wiped) {
      std::cout << "wiped " << endpoint << " (it held divergent data; " << added->dropped_entries
                << " entries dropped) and copied the chains afresh\n";
    }
    std::cout << "added " << endpoint << ": epoch " << added->committed.epoch() << " committed, "
              << added->copied.entries << " entries (" << added->copied.bytes << " bytes) copied\n";
  }
  return kExitOk;
}

}  // namespace tally::ctl
