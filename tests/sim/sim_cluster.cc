#include "sim_cluster.h"

#include <map>

#include "tally/client/reconfigure.h"

namespace tally::sim {

void Trace::Add(uint64_t v) {
  h_ ^= v + 0x9E3779B97F4A7C15ULL + (h_ << 6) + (h_ >> 2);
  h_ *= 0xBF58476D1CE4E5B9ULL;
  ++events_;
}

void Trace::Add(std::string_view s) {
  uint64_t x = 0xCBF29CE484222325ULL;  // FNV-1a
  for (unsigned char c : s) x = (x ^ c) * 0x100000001B3ULL;
  Add(x);
}

SimCluster::SimCluster(SimClusterOptions options)
    : options_(options),
      sched_(std::make_shared<net::SimScheduler>(net::SimSchedulerOptions{.seed = options.seed})),
      random_(options.seed ^ 0x5EEDULL),
      drop_probability_(options.links.drop_probability),
      link_seed_(options.seed * 0x9E3779B97F4A7C15ULL + 1),
      rocks_env_(rocksdb::NewMemEnv(rocksdb::Env::Default())),
      network_(std::make_unique<net::InProcessNetwork>(sched_)),
      threads_(std::make_unique<net::SimThreads>(sched_)),
      nodes_(static_cast<size_t>(options.nodes)) {
  sched_->SetTaskObserver([this](int64_t due, uint64_t seq) {
    trace_.Add(static_cast<uint64_t>(due));
    trace_.Add(seq);
  });
  InstallLinkPolicy();

  layout_.set_epoch(0);
  layout_.set_cluster_id("sim");
  layout_.add_sequencers(NodeName(0));
  if (options.layout_servers) {
    for (int i = 1; i < options.nodes; ++i) layout_.add_sequencers(NodeName(i));
    for (int i = 0; i < options.nodes; ++i) layout_.add_layout_servers(NodeName(i));
  }
  auto* segment = layout_.add_segments();
  segment->set_start(0);
  const int chain = std::min(3, options.nodes);
  for (int s = 0; s < options.stripes; ++s) {
    auto* stripe = segment->add_stripes();
    for (int k = 0; k < chain; ++k) stripe->add_log_units(NodeName((s + k) % options.nodes));
  }
  for (int i = 0; i < options.nodes; ++i) {
    auto* n = layout_.add_nodes();
    n->set_id(static_cast<uint64_t>(i + 1));
    n->set_endpoint(NodeName(i));
    nodes_[i].disk = std::make_unique<FaultInjectionFileSystem>(&nodes_[i].mem);
    nodes_[i].random = std::make_unique<SeededRandom>(options.seed * 31 + static_cast<uint64_t>(i));
    nodes_[i].transport = network_->MakeTransport(NodeName(i));
  }
}

SimCluster::~SimCluster() {
  // Nodes first (their bootstrap threads join through the scheduler), then
  // the threads and the network.
  for (auto& n : nodes_) n.node.reset();
  threads_.reset();
  client_transports_.clear();
  reconfigurer_.reset();
  for (auto& n : nodes_) n.transport.reset();
  network_.reset();
  sched_->RunUntilIdle();
  sched_->SetTaskObserver(nullptr);
}

void SimCluster::InstallLinkPolicy() {
  net::SimLinkOptions links = options_.links;
  links.drop_probability = drop_probability_;
  net::LinkPolicy policy = net::MakeSeededLinkPolicy(link_seed_++, links);
  network_->SetLinkPolicy([this, policy](std::string_view from, std::string_view to) {
    net::LinkAction a = policy(from, to);
    if (!a.drop && slow_extra_nanos_ > 0 && from == slow_sender_) {
      a.delay_nanos +=
          static_cast<int64_t>(random_.Uniform(static_cast<uint64_t>(slow_extra_nanos_) + 1));
    }
    trace_.Add(static_cast<uint64_t>(sched_->now()));
    trace_.Add(std::string(from) + ">" + std::string(to));
    trace_.Add(a.drop ? UINT64_MAX : static_cast<uint64_t>(a.delay_nanos));
    return a;
  });
}

void SimCluster::SetSlowSender(const std::string& name, int64_t max_extra_nanos) {
  trace_.Add("slow " + name + " " + std::to_string(max_extra_nanos));
  slow_sender_ = name;
  slow_extra_nanos_ = max_extra_nanos;
}

void SimCluster::SetDropProbability(double p) {
  drop_probability_ = p;
  InstallLinkPolicy();
}

Status SimCluster::StartAll() {
  for (int i = 0; i < size(); ++i) TALLY_RETURN_IF_ERROR(StartNode(i));
  return Status::OK();
}

Status SimCluster::StartNode(int i) {
  SimNode& n = nodes_[i];
  if (n.node != nullptr) return Status::OK();
  server::NodeOptions o;
  o.id = NodeId(static_cast<uint64_t>(i + 1));
  o.listen = NodeName(i);
  o.data_dir = "/" + NodeName(i);
  o.segment_bytes = 256 << 10;  // small segments: rolls happen in short runs
  o.roles.log = true;
  o.roles.sequencer = (i == 0) || options_.layout_servers;
  o.roles.layout = options_.layout_servers;
  o.layout = layout_;
  o.env = Env{sched_->clock(), n.random.get(), n.disk.get()};
  o.metadata_env = rocks_env_.get();
  o.threads = threads_.get();
  o.inline_io = true;
  o.failure_detector = options_.failure_detector;
  trace_.Add("start " + NodeName(i));
  auto node = server::Node::Start(std::move(o), n.transport.get());
  if (!node.ok()) return node.status().WithContext("starting " + NodeName(i));
  n.node = std::move(*node);
  return Status::OK();
}

void SimCluster::CrashNode(int i) {
  SimNode& n = nodes_[i];
  trace_.Add("crash " + NodeName(i));
  n.node.reset();
  Status st = n.disk->DropUnsyncedData();
  if (!st.ok())
    std::fprintf(stderr, "power cut on %s: %s\n", NodeName(i).c_str(), st.ToString().c_str());
  n.disk->ClearFailures();
}

Result<proto::Layout> SimCluster::RemoveNode(int i) {
  trace_.Add("remove " + NodeName(i));
  TALLY_ASSIGN_OR_RETURN(proto::Layout next, client::LayoutWithout(layout_, NodeName(i)));
  if (reconfigurer_ == nullptr) reconfigurer_ = network_->MakeTransport("reconfigurer");
  client::ReconfigureOptions o;
  o.rpc_timeout = std::chrono::milliseconds(100);
  o.seal_deadline = std::chrono::milliseconds(3000);
  o.proposer = NodeId(1000);
  o.threads = threads_.get();
  o.clock = sched_->clock();
  TALLY_ASSIGN_OR_RETURN(proto::Layout committed, client::Reconfigure(*reconfigurer_, next, o));
  layout_ = committed;
  return committed;
}

Result<proto::Layout> SimCluster::RefreshLayout() {
  if (reconfigurer_ == nullptr) reconfigurer_ = network_->MakeTransport("reconfigurer");
  std::vector<std::string> servers(layout_.layout_servers().begin(),
                                   layout_.layout_servers().end());
  TALLY_ASSIGN_OR_RETURN(proto::Layout newest,
                         client::FetchNewestLayout(*reconfigurer_, servers,
                                                   std::chrono::milliseconds(100), threads_.get()));
  if (newest.epoch() > layout_.epoch()) layout_ = newest;
  return layout_;
}

std::vector<std::string> SimCluster::CheckCommittedLayouts() {
  std::vector<std::string> out;
  std::map<uint64_t, std::pair<std::string, std::string>> agreed;  // epoch -> (bytes, who)
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i].node == nullptr || nodes_[i].node->layout_server() == nullptr) continue;
    log::LayoutServer& ls = *nodes_[i].node->layout_server();
    auto latest = ls.latest_committed_epoch();
    if (!latest) continue;
    // (layout.committed reads epoch 0 as "the latest", so epoch 0 itself,
    // the static bootstrap layout here, cannot be asked for by number.)
    for (uint64_t e = 1; e <= *latest; ++e) {
      proto::LayoutCommittedRequest req;
      req.set_epoch(e);
      auto r = ls.Committed(req);
      if (!r.ok()) continue;  // this server missed that commit (a minority)
      if (r->layout().epoch() != e) {
        out.push_back(NodeName(i) + " holds a layout of epoch " +
                      std::to_string(r->layout().epoch()) + " as committed for epoch " +
                      std::to_string(e));
      }
      const std::string bytes = r->layout().SerializeAsString();
      auto [it, fresh] = agreed.emplace(e, std::make_pair(bytes, NodeName(i)));
      if (!fresh && it->second.first != bytes) {
        out.push_back("epoch " + std::to_string(e) + " committed differently on " +
                      it->second.second + " and " + NodeName(i) + ": Paxos agreement broken");
      }
    }
  }
  if (!agreed.empty() && agreed.rbegin()->first < layout_.epoch()) {
    out.push_back("the cluster runs epoch " + std::to_string(layout_.epoch()) +
                  " but no layout server committed it");
  }
  return out;
}

void SimCluster::FailSyncs(int i, int count) {
  trace_.Add("fail syncs " + NodeName(i));
  nodes_[i].disk->FailNext(FaultOp::kSync, count);
}

std::unique_ptr<net::Transport> SimCluster::NewTransport(const std::string& name) {
  return network_->MakeTransport(name);
}

Result<std::unique_ptr<client::Client>> SimCluster::NewClient(
    const std::string& name, const std::function<void(client::ClientOptions&)>& tweak) {
  client_transports_.push_back(network_->MakeTransport(name));
  client::ClientOptions o;
  o.transport = client_transports_.back().get();
  o.layout = layout_;
  o.rpc_timeout = std::chrono::milliseconds(100);
  o.hole_fill_timeout = std::chrono::milliseconds(50);
  o.retry_deadline = std::chrono::milliseconds(3000);
  o.max_batch = 16;
  o.append_threads = 2;
  o.principal = name;
  o.env = Env{sched_->clock(), &random_, nullptr};
  o.threads = threads_.get();
  if (tweak) tweak(o);
  return client::Client::Create(std::move(o));
}

std::vector<std::string> SimCluster::ChainOf(uint64_t address) const {
  const auto& stripes = layout_.segments(0).stripes();
  const auto& chain = stripes[static_cast<int>(address % stripes.size())].log_units();
  return {chain.begin(), chain.end()};
}

}  // namespace tally::sim
