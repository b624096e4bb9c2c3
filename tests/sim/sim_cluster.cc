#include "sim_cluster.h"

#include <algorithm>
#include <map>

#include "tally/client/reconfigure.h"
#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"

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
  layout_.add_sequencers(NodeName(options.primary_sequencer));
  if (options.layout_servers) {
    for (int k = 1; k < options.nodes; ++k) {
      layout_.add_sequencers(NodeName((options.primary_sequencer + k) % options.nodes));
    }
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
  for (auto& n : nodes_) {
    if (n.reaper != nullptr) n.reaper->Join();
    n.reaper.reset();
  }
  threads_.reset();
  client_transports_.clear();
  reconfigurer_.reset();
  observer_.reset();
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
    // A cut drops the message after the seeded draw, so that cutting a link
    // does not shift the delays of every other message.
    if (!a.drop) {
      std::lock_guard lock(partition_mu_);
      if (IsCutLocked(from, to)) {
        a.drop = true;
        ++cut_messages_;
      }
    }
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
  if (n.reaper != nullptr) {  // the crash's teardown and power cut first
    n.reaper->Join();
    n.reaper.reset();
  }
  server::NodeOptions o;
  o.id = NodeId(static_cast<uint64_t>(i + 1));
  o.listen = NodeName(i);
  o.data_dir = "/" + NodeName(i);
  o.segment_bytes = 256 << 10;  // small segments: rolls happen in short runs
  o.roles.log = true;
  o.roles.sequencer = (i == options_.primary_sequencer) || options_.layout_servers;
  o.roles.layout = options_.layout_servers;
  o.layout = layout_;
  o.env = Env{sched_->clock(), n.random.get(), n.disk.get()};
  o.metadata_env = rocks_env_.get();
  o.threads = threads_.get();
  o.inline_io = true;
  o.failure_detector = options_.failure_detector;
  o.heal = options_.heal;
  trace_.Add("start " + NodeName(i));
  auto node = server::Node::Start(std::move(o), n.transport.get());
  if (!node.ok()) return node.status().WithContext("starting " + NodeName(i));
  n.node = std::move(*node);
  return Status::OK();
}

void SimCluster::CrashNode(int i) {
  SimNode& n = nodes_[i];
  if (n.node == nullptr) return;
  trace_.Add("crash " + NodeName(i));
  // The node is dead to the network at once: nothing it sends or is sent
  // arrives. Tearing it down joins its threads, which can take a while (a
  // failure detector in the middle of a reconfiguration returns only when
  // its seal or Paxos round gives up), so a reaper thread does it and then
  // cuts the power; the caller goes on. Afterwards its endpoint refuses
  // calls.
  {
    std::lock_guard lock(partition_mu_);
    crashing_.insert(NodeName(i));
  }
  std::shared_ptr<server::Node> doomed = std::move(n.node);
  n.reaper = threads_->Start("reaper-" + NodeName(i), [this, i, doomed]() mutable {
    doomed.reset();
    {
      std::lock_guard lock(partition_mu_);
      crashing_.erase(NodeName(i));
    }
    SimNode& dead = nodes_[i];
    Status st = dead.disk->DropUnsyncedData();
    if (!st.ok()) {
      std::fprintf(stderr, "power cut on %s: %s\n", NodeName(i).c_str(), st.ToString().c_str());
    }
    dead.disk->ClearFailures();
  });
}

Result<proto::Layout> SimCluster::RemoveNode(int i) {
  trace_.Add("remove " + NodeName(i));
  TALLY_ASSIGN_OR_RETURN(proto::Layout next, client::LayoutWithout(layout_, NodeName(i)));
  return Reconfigure(next);
}

Result<proto::Layout> SimCluster::Reconfigure(const proto::Layout& next, NodeId proposer) {
  trace_.Add("reconfigure to epoch " + std::to_string(next.epoch()));
  if (reconfigurer_ == nullptr) reconfigurer_ = network_->MakeTransport("reconfigurer");
  client::ReconfigureOptions o;
  o.rpc_timeout = std::chrono::milliseconds(100);
  o.seal_deadline = std::chrono::milliseconds(3000);
  o.proposer = proposer;
  o.threads = threads_.get();
  o.clock = sched_->clock();
  TALLY_ASSIGN_OR_RETURN(proto::Layout committed, client::Reconfigure(*reconfigurer_, next, o));
  if (committed.epoch() > layout_.epoch()) layout_ = committed;
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

void SimCluster::ForEachCommitted(
    const std::function<void(const std::string& who, uint64_t epoch, const proto::Layout&)>& fn) {
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
      if (r.ok()) fn(NodeName(i), e, r->layout());  // else: a minority missed that commit
    }
  }
}

std::vector<std::string> SimCluster::CheckCommittedLayouts() {
  std::vector<std::string> out;
  std::map<uint64_t, std::pair<std::string, std::string>> agreed;  // epoch -> (bytes, who)
  ForEachCommitted([&](const std::string& who, uint64_t e, const proto::Layout& layout) {
    if (layout.epoch() != e) {
      out.push_back(who + " holds a layout of epoch " + std::to_string(layout.epoch()) +
                    " as committed for epoch " + std::to_string(e));
    }
    const std::string bytes = layout.SerializeAsString();
    auto [it, fresh] = agreed.emplace(e, std::make_pair(bytes, who));
    if (!fresh && it->second.first != bytes) {
      out.push_back("epoch " + std::to_string(e) + " committed differently on " +
                    it->second.second + " and " + who + ": Paxos agreement broken");
    }
  });
  if (!agreed.empty() && agreed.rbegin()->first < layout_.epoch()) {
    out.push_back("the cluster runs epoch " + std::to_string(layout_.epoch()) +
                  " but no layout server committed it");
  }
  return out;
}

std::vector<std::pair<std::string, proto::Layout>> SimCluster::CommittedLayouts() {
  std::vector<std::pair<std::string, proto::Layout>> out;
  ForEachCommitted([&](const std::string& who, uint64_t, const proto::Layout& layout) {
    out.emplace_back(who, layout);
  });
  return out;
}

proto::Layout SimCluster::NewestCommitted() {
  proto::Layout newest = layout_;
  for (auto& n : nodes_) {
    if (n.node == nullptr || n.node->layout_server() == nullptr) continue;
    auto r = n.node->layout_server()->Committed(proto::LayoutCommittedRequest());
    if (r.ok() && r->layout().epoch() > newest.epoch()) newest = r->layout();
  }
  return newest;
}

std::map<int, uint64_t> SimCluster::SealedEpochs(std::chrono::milliseconds timeout) {
  if (observer_ == nullptr) observer_ = NewObserverTransport("observer");
  // All at once; the last answer (or timeout) wakes the caller.
  struct Gather {
    std::mutex mu;
    std::map<int, uint64_t> out;  // GUARDED_BY(mu)
    int left = 0;                 // GUARDED_BY(mu)
    Threads::Wake wake;           // GUARDED_BY(mu)
  };
  auto g = std::make_shared<Gather>();
  std::vector<int> up_nodes;
  for (int i = 0; i < size(); ++i) {
    if (up(i)) up_nodes.push_back(i);
  }
  g->left = static_cast<int>(up_nodes.size());
  if (up_nodes.empty()) return {};
  proto::TailRequest req;
  req.set_epoch(UINT64_MAX);  // never below the sealed epoch
  net::CallOptions call;
  call.timeout = timeout;
  threads_->Wait([&](Threads::Wake wake) {
    {
      std::lock_guard lock(g->mu);
      g->wake = std::move(wake);
    }
    for (int i : up_nodes) {
      net::CallTyped<proto::TailResponse>(*observer_->Connect(NodeName(i)), "log.tail", req, call,
                                          [g, i](Result<proto::TailResponse> r) {
                                            Threads::Wake done;
                                            {
                                              std::lock_guard lock(g->mu);
                                              if (r.ok()) g->out[i] = r->sealed_epoch();
                                              if (--g->left == 0) done = g->wake;
                                            }
                                            if (done) done();
                                          });
    }
  });
  std::lock_guard lock(g->mu);
  return g->out;
}

void SimCluster::Cut(const std::vector<std::string>& from, const std::vector<std::string>& to,
                     bool both_ways) {
  std::lock_guard lock(partition_mu_);
  for (const auto& f : from) {
    for (const auto& t : to) {
      if (f == t) continue;
      trace_.Add("cut " + f + ">" + t);
      cuts_.emplace(f, t);
      if (both_ways) {
        trace_.Add("cut " + t + ">" + f);
        cuts_.emplace(t, f);
      }
    }
  }
}

void SimCluster::Isolate(const std::string& name) {
  std::lock_guard lock(partition_mu_);
  trace_.Add("isolate " + name);
  isolated_.insert(name);
}

void SimCluster::Heal() {
  std::lock_guard lock(partition_mu_);
  trace_.Add("heal");
  cuts_.clear();
  isolated_.clear();
}

bool SimCluster::IsCutLocked(std::string_view from, std::string_view to) const {
  if (crashing_.count(from) != 0 || crashing_.count(to) != 0) return true;
  if (from == to) return false;
  if (observers_.count(from) != 0 || observers_.count(to) != 0) return false;
  if (isolated_.count(from) != 0 || isolated_.count(to) != 0) return true;
  return cuts_.count({std::string(from), std::string(to)}) != 0;
}

uint64_t SimCluster::cut_messages() const {
  std::lock_guard lock(partition_mu_);
  return cut_messages_;
}

void SimCluster::FailSyncs(int i, int count) {
  trace_.Add("fail syncs " + NodeName(i));
  nodes_[i].disk->FailNext(FaultOp::kSync, count);
}

std::unique_ptr<net::Transport> SimCluster::NewTransport(const std::string& name) {
  return network_->MakeTransport(name);
}

std::unique_ptr<net::Transport> SimCluster::NewObserverTransport(const std::string& name) {
  {
    std::lock_guard lock(partition_mu_);
    observers_.insert(name);
  }
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
