#include "failure_detector.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>
#include <set>

#include "tally/client/node_add.h"
#include "tally/client/reconfigure.h"
#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"

namespace tally::server {

void PeerHealth::Success(int64_t now_nanos, int64_t rtt_nanos) {
  (void)now_nanos;
  srtt_ = srtt_ == 0 ? rtt_nanos : (7 * srtt_ + rtt_nanos) / 8;
  failures_ = 0;
}

void PeerHealth::Failure(int64_t now_nanos) {
  if (failures_++ == 0) first_failure_ = now_nanos;
}

bool PeerHealth::Suspected(int64_t now_nanos, int misses, int64_t min_timeout_nanos) const {
  const int64_t timeout = std::max(min_timeout_nanos, 4 * srtt_);
  return failures_ >= misses && now_nanos - first_failure_ >= timeout;
}

FailureDetector::FailureDetector(std::string self, NodeId self_id, proto::Layout static_layout,
                                 net::Transport* transport, FailureDetectorOptions options)
    : self_(std::move(self)),
      self_id_(self_id),
      static_layout_(std::move(static_layout)),
      transport_(transport),
      polled_(transport),
      options_(options),
      threads_(options.threads != nullptr ? options.threads : SystemThreads()),
      clock_(options.clock != nullptr ? options.clock : DefaultEnv().clock) {}

FailureDetector::~FailureDetector() {
  stopping_ = true;
  if (thread_ != nullptr) thread_->Join();
  // A healing in progress runs to its end (it holds no lock and each of its
  // RPCs is bounded by heal_rpc_timeout).
  if (healer_ != nullptr) healer_->Join();
}

void FailureDetector::Start() {
  thread_ = threads_->Start("failure-detector-" + self_, [this] { Loop(); });
}

namespace {

// What one endpoint answered, and when (clock nanos).
template <typename Resp>
struct Answer {
  Result<Resp> result = Internal("no answer");
  int64_t at_nanos = 0;
};

// Calls `method(req)` on every endpoint at once and blocks (through
// `threads`) until all answered or timed out, so a dead endpoint costs one
// `timeout`, not one per endpoint.
template <typename Resp, typename Req>
std::map<std::string, Answer<Resp>> CallEach(net::Transport& transport,
                                             const std::set<std::string>& endpoints,
                                             const std::string& method, const Req& req,
                                             std::chrono::milliseconds timeout, Threads& threads,
                                             Clock& clock) {
  struct Gather {
    std::mutex mu;
    std::map<std::string, Answer<Resp>> out;  // GUARDED_BY(mu)
    size_t left = 0;                          // GUARDED_BY(mu)
    Threads::Wake wake;                       // GUARDED_BY(mu)
  };
  auto g = std::make_shared<Gather>();
  g->left = endpoints.size();
  net::CallOptions call;
  call.timeout = timeout;
  Clock* c = &clock;
  threads.Wait([&](Threads::Wake wake) {
    {
      std::lock_guard lock(g->mu);
      g->wake = wake;
      if (g->left == 0) {
        wake();
        return;
      }
    }
    for (const auto& endpoint : endpoints) {
      net::CallTyped<Resp>(*transport.Connect(endpoint), method, req, call,
                           [g, endpoint, c](Result<Resp> r) {
                             Threads::Wake done;
                             {
                               std::lock_guard lock(g->mu);
                               g->out[endpoint] = Answer<Resp>{std::move(r), c->NowNanos()};
                               if (--g->left == 0) done = g->wake;
                             }
                             if (done) done();
                           });
    }
  });
  std::lock_guard lock(g->mu);
  return std::move(g->out);
}

}  // namespace

std::map<std::string, std::pair<bool, int64_t>> FailureDetector::PingAll(
    const std::set<std::string>& peers) {
  const int64_t start = clock_->NowNanos();
  std::map<std::string, std::pair<bool, int64_t>> out;
  for (auto& [peer, a] :
       CallEach<proto::GetLayoutResponse>(polled_, peers, "layout.get", proto::GetLayoutRequest(),
                                          options_.ping_timeout, *threads_, *clock_)) {
    out[peer] = {a.result.ok(), a.at_nanos - start};
  }
  return out;
}

bool FailureDetector::IsDecisionMaker(const proto::Layout& layout) {
  // The reachable layout server with the lowest node id decides.
  std::map<uint64_t, std::string> by_id;
  for (const auto& n : layout.nodes()) by_id[n.id()] = n.endpoint();
  const std::set<std::string> servers(layout.layout_servers().begin(),
                                      layout.layout_servers().end());
  for (const auto& [id, endpoint] : by_id) {
    if (servers.count(endpoint) == 0) continue;
    if (endpoint == self_) return true;
    auto it = peers_.find(endpoint);
    const bool reachable =
        it == peers_.end() ||
        !it->second.Suspected(clock_->NowNanos(), options_.misses,
                              std::chrono::nanoseconds(options_.min_timeout).count());
    if (reachable) return false;  // a lower id is alive: it decides
  }
  return false;
}

std::set<std::string> FailureDetector::Removed(const proto::Layout& layout) const {
  std::set<std::string> out;
  for (const auto& n : layout.nodes()) {
    if (client::InAnyChain(layout, n.endpoint())) continue;
    if (!client::LayoutWith(layout, n.endpoint()).ok()) continue;  // no chain it could join
    out.insert(n.endpoint());
  }
  return out;
}

void FailureDetector::Heal(proto::Layout layout, std::string endpoint) {
  spdlog::info("node {}: {} answers again; bringing it back (state transfer from epoch {})",
               self_id_.value(), endpoint, layout.epoch());
  client::AddNodeOptions ao;
  ao.rpc_timeout = options_.heal_rpc_timeout;
  // The seal and Paxos as in a removal: writes wait from the seal on.
  ao.reconfigure_rpc_timeout = options_.ping_timeout * 2;
  ao.seal_deadline = std::chrono::milliseconds(2000);
  ao.proposer = self_id_;
  ao.wipe_divergent = true;
  ao.threads = threads_;
  ao.clock = clock_;
  const uint64_t self = self_id_.value();
  ao.progress = [self, endpoint](int stripe, const char* phase, const std::string& source,
                                 const client::TransferStats& s, bool done) {
    if (!done) return;
    spdlog::info(
        "node {}: healing {}: stripe {} {} from {}: {} entries ({} bytes) copied, {} "
        "already there",
        self, endpoint, stripe, phase, source, s.entries, s.bytes, s.skipped);
  };
  auto added = client::AddNode(*transport_, layout, endpoint, ao);
  if (added.ok()) {
    spdlog::info("node {}: {} is back: epoch {} committed{}", self_id_.value(), endpoint,
                 added->committed.epoch(),
                 added->wiped ? " (it held divergent data and was wiped first: " +
                                    std::to_string(added->dropped_entries) + " entries dropped)"
                              : "");
  } else {
    spdlog::warn("node {}: bringing {} back failed: {}", self_id_.value(), endpoint,
                 added.status().ToString());
  }
  healed_endpoint_ = endpoint;
  healed_ok_ = added.ok();
  healing_.store(false, std::memory_order_release);
}

void FailureDetector::MaybeHeal(const proto::Layout& layout, const std::set<std::string>& removed,
                                const std::map<std::string, std::pair<bool, int64_t>>& answers) {
  const int64_t now = clock_->NowNanos();
  if (healer_ != nullptr && !healing_.load(std::memory_order_acquire)) {
    healer_->Join();
    healer_.reset();
    auto it = returning_.find(healed_endpoint_);
    if (healed_ok_) {
      if (it != returning_.end()) returning_.erase(it);
    } else if (it != returning_.end()) {
      Returning& r = it->second;
      const int64_t max = std::chrono::nanoseconds(options_.heal_backoff_max).count();
      r.backoff =
          std::min(max, r.backoff == 0 ? std::chrono::nanoseconds(options_.heal_backoff).count()
                                       : 2 * r.backoff);
      r.not_before = now + r.backoff;
      r.answers = 0;
    }
  }
  for (auto it = returning_.begin(); it != returning_.end();) {
    it = removed.count(it->first) == 0 ? returning_.erase(it) : std::next(it);
  }
  for (const auto& endpoint : removed) {
    auto a = answers.find(endpoint);
    Returning& r = returning_[endpoint];
    r.answers = a != answers.end() && a->second.first ? r.answers + 1 : 0;
  }
  if (!options_.heal || healer_ != nullptr || !IsDecisionMaker(layout)) return;
  for (const auto& [endpoint, r] : returning_) {
    if (r.answers < options_.heal_after || now < r.not_before) continue;
    healing_.store(true, std::memory_order_release);
    healer_ =
        threads_->Start("heal-" + endpoint, [this, layout, endpoint] { Heal(layout, endpoint); });
    return;
  }
}

void FailureDetector::Round(proto::Layout& layout) {
  std::vector<std::string> servers(layout.layout_servers().begin(), layout.layout_servers().end());
  auto newest = client::FetchNewestLayout(polled_, servers, options_.ping_timeout, threads_);
  if (newest.ok() && newest->epoch() > layout.epoch()) {
    layout = *newest;
    peers_.clear();  // a new epoch: judge the members afresh
  }
  // The members whose failure stops writes: log units and sequencers, and
  // the layout servers (for the decision-maker choice).
  std::set<std::string> watch;
  for (const auto& seg : layout.segments()) {
    for (const auto& stripe : seg.stripes()) {
      for (const auto& u : stripe.log_units()) watch.insert(u);
    }
  }
  for (const auto& s : layout.sequencers()) watch.insert(s);
  for (const auto& s : layout.layout_servers()) watch.insert(s);
  watch.erase(self_);
  // Removed nodes are pinged too: healing starts when one answers again.
  const std::set<std::string> removed = Removed(layout);
  std::set<std::string> ping = watch;
  ping.insert(removed.begin(), removed.end());
  ping.erase(self_);
  const int64_t min_timeout = std::chrono::nanoseconds(options_.min_timeout).count();
  const int64_t now = clock_->NowNanos();
  const auto answers = PingAll(ping);
  std::map<std::string, std::pair<bool, int64_t>> removed_answers;
  if (removed.count(self_) != 0) removed_answers[self_] = {true, 0};  // we answer ourselves
  std::set<std::string> answered{self_};
  for (const auto& [peer, result] : answers) {
    if (removed.count(peer) != 0) removed_answers[peer] = result;
    if (watch.count(peer) == 0) continue;
    if (result.first) {
      peers_[peer].Success(now, result.second);
      answered.insert(peer);
    } else {
      peers_[peer].Failure(now);
    }
  }
  if (!IsDecisionMaker(layout)) {
    sealed_ahead_since_ = 0;
    MaybeHeal(layout, removed, removed_answers);
    return;
  }
  // Every suspect leaves in one change: a layout without only one of two
  // dead units of a chain still names the other, and sealing it (every unit
  // of the new layout) could never succeed.
  proto::Layout next = layout;
  std::string gone;
  for (const auto& peer : watch) {
    if (!peers_[peer].Suspected(clock_->NowNanos(), options_.misses, min_timeout)) continue;
    auto without = client::LayoutWithout(next, peer);
    if (!without.ok()) continue;  // only a layout server, or the last replica: nothing to do
    without->set_epoch(layout.epoch() + 1);
    next = std::move(*without);
    gone += (gone.empty() ? "" : ", ") + peer;
  }
  if (!gone.empty()) {
    spdlog::warn("node {}: {} unreachable for {} pings; reconfiguring to epoch {} without it",
                 self_id_.value(), gone, options_.misses, next.epoch());
  } else if (healer_ == nullptr && StalledSeal(layout, answered)) {
    // Units sealed at e + 1 refuse epoch e, and no layout of e + 1 was
    // agreed for a while: whoever sealed them (a decision maker that
    // crashed, a `node add` that died mid-copy) is gone. Finish the change
    // with the members as they are (Paxos keeps a layout already accepted
    // for e + 1, if any).
    next.set_epoch(layout.epoch() + 1);
    spdlog::warn(
        "node {}: a unit is sealed above epoch {} with no layout agreed for {} ms; "
        "committing epoch {} with the same members",
        self_id_.value(), layout.epoch(), options_.stalled_seal_grace.count(), next.epoch());
  } else {
    MaybeHeal(layout, removed, removed_answers);
    return;
  }
  sealed_ahead_since_ = 0;
  client::ReconfigureOptions ro;
  ro.rpc_timeout = options_.ping_timeout * 2;
  ro.seal_deadline = std::chrono::milliseconds(2000);
  ro.proposer = self_id_;
  ro.threads = threads_;
  ro.clock = clock_;
  auto committed = client::Reconfigure(*transport_, next, ro);
  if (committed.ok()) {
    spdlog::info("node {}: epoch {} committed (sequencer {})", self_id_.value(), committed->epoch(),
                 committed->sequencers(0));
    layout = *committed;
    peers_.clear();
  } else {
    spdlog::warn("node {}: reconfiguration to epoch {} failed: {}", self_id_.value(), next.epoch(),
                 committed.status().ToString());
  }
  // One change per round; judge again in the new epoch.
}

bool FailureDetector::StalledSeal(const proto::Layout& layout,
                                  const std::set<std::string>& answered) {
  if (!SealedAhead(layout, answered)) {
    sealed_ahead_since_ = 0;
    return false;
  }
  const int64_t now = clock_->NowNanos();
  if (sealed_ahead_since_ == 0) sealed_ahead_since_ = now;
  return now - sealed_ahead_since_ >= std::chrono::nanoseconds(options_.stalled_seal_grace).count();
}

bool FailureDetector::SealedAhead(const proto::Layout& layout,
                                  const std::set<std::string>& answered) {
  // Only the units that answered this round's ping: a silent one would make
  // the probe wait out its timeout, and delay detection.
  std::set<std::string> units;
  for (const auto& seg : layout.segments()) {
    for (const auto& stripe : seg.stripes()) {
      for (const auto& u : stripe.log_units()) {
        if (answered.count(u) != 0) units.insert(u);
      }
    }
  }
  proto::TailRequest req;
  req.set_epoch(UINT64_MAX);  // never refused: the answer names the sealed epoch
  for (const auto& [unit, a] : CallEach<proto::TailResponse>(
           polled_, units, "log.tail", req, options_.ping_timeout, *threads_, *clock_)) {
    if (a.result.ok() && a.result->sealed_epoch() > layout.epoch()) return true;
  }
  return false;
}

void FailureDetector::Loop() {
  proto::Layout layout = static_layout_;
  const int64_t period = std::chrono::nanoseconds(options_.period).count();
  while (!stopping_) {
    Round(layout);
    if (stopping_) return;
    threads_->SleepNanos(period);
  }
}

}  // namespace tally::server
