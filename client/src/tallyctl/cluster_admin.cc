#include "cluster_admin.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <random>
#include <thread>

#include "tally/base/threads.h"
#include "tally/client/client.h"
#include "tally/client/layout.h"
#include "tally/client/log_unit_client.h"
#include "tally/client/reconfigure.h"
#include "tally/client/state_transfer.h"
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
      "data that differs from the chain (wipe it otherwise)");
  node_add_->add_option("NODE", node_, "the node: its id (as in `tallyctl layout`) or endpoint")
      ->required();
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

// One chain that gains the node: where its data comes from.
struct Gain {
  int stripe;
  std::string source;  // the chain's tail in the current layout
  uint64_t copied_to;  // the first copy covered [start, copied_to)
};

// Prints progress lines of one copy to stderr, at most every 500 ms.
class ProgressPrinter {
 public:
  explicit ProgressPrinter(std::string what)
      : what_(std::move(what)), start_(std::chrono::steady_clock::now()) {}

  void operator()(const client::TransferStats& s) { Print(s, false); }

  void Print(const client::TransferStats& s, bool final) {
    const auto now = std::chrono::steady_clock::now();
    if (!final && now - last_ < std::chrono::milliseconds(500)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double mbps = secs > 0 ? static_cast<double>(s.bytes) / 1e6 / secs : 0.0;
    char rate[32];
    std::snprintf(rate, sizeof rate, "%.1f", mbps);
    std::cerr << what_ << ": " << s.entries << " entries (" << s.holes << " holes), " << s.bytes
              << " bytes, " << s.skipped << " already there, up to address " << s.next << ", "
              << rate << " MB/s" << (final ? " (done)" : "") << "\n";
  }

 private:
  std::string what_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_{};
};

// `base` for the addresses of one stripe of `seg`.
client::CopyOptions CopyFor(client::CopyOptions base, int stripe,
                            const proto::Layout::Segment& seg) {
  base.stripes = static_cast<uint32_t>(seg.stripes_size());
  base.stripe = static_cast<uint32_t>(stripe);
  return base;
}

void AddUp(client::TransferStats* total, const client::TransferStats& s) {
  total->entries += s.entries;
  total->holes += s.holes;
  total->bytes += s.bytes;
  total->skipped += s.skipped;
}

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
  auto next = client::LayoutWith(current, endpoint);
  if (!next.ok() && next.status().code() == Code::kNotFound) {
    return NothingToDo(g_.json(), "added", *target, "in the layout");
  }
  if (!next.ok()) return Fail(g_, next.status());

  // The chains of the last segment that gain the node, each fed by its tail.
  const auto& old_seg = current.segments(current.segments_size() - 1);
  const auto& new_seg = next->segments(next->segments_size() - 1);
  const uint64_t start = old_seg.start();
  std::vector<Gain> gains;
  for (int s = 0; s < new_seg.stripes_size(); ++s) {
    const auto& before = old_seg.stripes(s).log_units();
    const auto& after = new_seg.stripes(s).log_units();
    if (std::find(before.begin(), before.end(), endpoint) != before.end()) continue;
    if (std::find(after.begin(), after.end(), endpoint) == after.end()) continue;
    gains.push_back({s, before.Get(before.size() - 1), start});
  }

  client::CopyOptions copy;
  copy.rpc_timeout = timeout;
  // 4 MiB reads for 4 KiB entries (halved by CopyRange if a unit refuses).
  copy.chunk_entries = 1024;
  client::TransferStats total;
  // 1. Catch up while writes go on in the current epoch: [start, tail), one
  // thread per chain so the stripes' copies overlap (each is a
  // read -> write round trip at a time).
  std::vector<Result<client::TransferStats>> caught(gains.size(), Internal("not copied"));
  {
    std::vector<std::thread> copiers;
    for (size_t k = 0; k < gains.size(); ++k) {
      copiers.emplace_back([&, k] {
        Gain& g = gains[k];
        client::LogUnitClient src(transport.Connect(g.source), Epoch(current.epoch()), timeout);
        auto tail = src.Tail();
        if (!tail.ok()) {
          caught[k] = tail.status().WithContext("log.tail on " + g.source);
          return;
        }
        if (tail->local_tail() <= start) {
          caught[k] = client::TransferStats{.next = start};
          return;
        }
        ProgressPrinter print("stripe " + std::to_string(g.stripe) + ": copying " + g.source +
                              " -> " + endpoint);
        caught[k] = client::CopyRange(transport, g.source, endpoint, Address(start),
                                      Address(tail->local_tail()), current.epoch(), std::ref(print),
                                      CopyFor(copy, g.stripe, new_seg));
        if (caught[k].ok()) print.Print(*caught[k], true);
      });
    }
    for (auto& t : copiers) t.join();
  }
  for (size_t k = 0; k < gains.size(); ++k) {
    if (!caught[k].ok()) return Fail(g_, caught[k].status());
    AddUp(&total, *caught[k]);
    gains[k].copied_to = caught[k]->next;
  }

  // 2. Seal the next epoch on every unit of the new layout (the node too):
  // no write of the current epoch lands after this.
  client::ReconfigureOptions ro;
  ro.rpc_timeout = timeout;
  ro.proposer = NodeId(std::random_device{}() | 1u);
  auto sealed = client::SealUnits(transport, *next, ro);
  if (!sealed.ok()) return Fail(g_, sealed.status());

  // 3. The delta written before the seal: [copied_to, sealed tail), at the
  // new epoch. If it fails, the cluster must not stay sealed without a
  // layout: commit the current layout at the new epoch instead.
  Status delta = Status::OK();
  for (const auto& g : gains) {
    const auto& answer = sealed->at(g.source);
    if (answer.sealed_epoch() != next->epoch()) {
      delta = WrongEpoch(g.source + " is sealed at epoch " + std::to_string(answer.sealed_epoch()) +
                         ", above " + std::to_string(next->epoch()) +
                         ": another reconfiguration is running");
      break;
    }
    if (answer.local_tail() <= g.copied_to) continue;
    ProgressPrinter print("stripe " + std::to_string(g.stripe) + ": copying the rest " + g.source +
                          " -> " + endpoint);
    auto r = client::CopyRange(transport, g.source, endpoint, Address(g.copied_to),
                               Address(answer.local_tail()), next->epoch(), std::ref(print),
                               CopyFor(copy, g.stripe, new_seg));
    if (!r.ok()) {
      delta = r.status();
      break;
    }
    print.Print(*r, true);
    AddUp(&total, *r);
  }
  if (!delta.ok()) {
    proto::Layout same = current;
    same.set_epoch(next->epoch());
    auto undo = client::CommitLayout(transport, same, ro);
    std::string what = undo.ok() ? "; epoch " + std::to_string(next->epoch()) +
                                       " was committed without " + endpoint
                                 : "; committing epoch " + std::to_string(next->epoch()) +
                                       " without it failed too: " + undo.status().ToString();
    return Fail(g_, delta.WithContext("copying to " + endpoint + " after the seal" + what));
  }

  // 4. Agree on the layout with the node.
  auto committed = client::CommitLayout(transport, *next, ro);
  if (!committed.ok()) return Fail(g_, committed.status());
  if (committed->SerializeAsString() != next->SerializeAsString()) {
    return Fail(g_, FailedPrecondition(
                        "another reconfiguration won epoch " + std::to_string(committed->epoch()) +
                        "; check `tallyctl layout` and retry if the node is not in it"));
  }
  if (g_.json()) {
    std::cout << "{\"added\":\"" << endpoint << "\",\"epoch\":" << committed->epoch()
              << ",\"entries\":" << total.entries << ",\"bytes\":" << total.bytes << "}\n";
  } else {
    std::cout << "added " << endpoint << ": epoch " << committed->epoch() << " committed\n";
  }
  return kExitOk;
}

}  // namespace tally::ctl
