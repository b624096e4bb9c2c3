#include "tally/client/reconfigure.h"

#include <algorithm>
#include <map>
#include <mutex>

#include "rpc.h"
#include "tally/client/layout.h"
#include "tally/log/layout_proposer.h"
#include "tally/proto/logunit.pb.h"

namespace tally::client {

Result<proto::Layout> LayoutWithout(const proto::Layout& current, const std::string& endpoint) {
  proto::Layout next = current;
  next.set_epoch(current.epoch() + 1);
  bool named = false;
  for (auto& seg : *next.mutable_segments()) {
    for (int s = 0; s < seg.stripes_size(); ++s) {
      auto* units = seg.mutable_stripes(s)->mutable_log_units();
      auto it = std::find(units->begin(), units->end(), endpoint);
      if (it == units->end()) continue;
      named = true;
      units->erase(it);
      if (units->empty()) {
        return FailedPrecondition("removing " + endpoint + " would leave stripe " +
                                  std::to_string(s) +
                                  " with no log unit; its data would be unreachable. Bring "
                                  "the node back (or add a replica first)");
      }
    }
  }
  auto* seqs = next.mutable_sequencers();
  auto sit = std::find(seqs->begin(), seqs->end(), endpoint);
  if (sit != seqs->end()) {
    named = true;
    seqs->erase(sit);
    if (seqs->empty()) {
      return FailedPrecondition("removing " + endpoint +
                                " would leave no sequencer; list a standby sequencer in the "
                                "layout first");
    }
  }
  if (!named) {
    return NotFound("the layout of epoch " + std::to_string(current.epoch()) + " does not name " +
                    endpoint + " as a log unit or sequencer");
  }
  return next;
}

Result<proto::Layout> LayoutWith(const proto::Layout& current, const std::string& endpoint) {
  if (endpoint.empty()) return InvalidArgument("an empty endpoint cannot join the layout");
  if (current.segments_size() == 0) {
    return InvalidArgument("the layout of epoch " + std::to_string(current.epoch()) +
                           " has no segment");
  }
  proto::Layout next = current;
  next.set_epoch(current.epoch() + 1);
  // The replication target: 3, or fewer when the cluster has fewer nodes.
  std::vector<std::string> nodes{endpoint};
  auto note = [&](const std::string& e) {
    if (std::find(nodes.begin(), nodes.end(), e) == nodes.end()) nodes.push_back(e);
  };
  for (const auto& n : current.nodes()) note(n.endpoint());
  for (const auto& seg : current.segments()) {
    for (const auto& stripe : seg.stripes()) {
      for (const auto& u : stripe.log_units()) note(u);
    }
  }
  const int target = static_cast<int>(std::min<size_t>(3, nodes.size()));
  bool changed = false;
  auto* seg = next.mutable_segments(next.segments_size() - 1);
  for (auto& stripe : *seg->mutable_stripes()) {
    auto* units = stripe.mutable_log_units();
    if (std::find(units->begin(), units->end(), endpoint) != units->end()) continue;
    if (units->size() >= target) continue;
    units->Add(std::string(endpoint));
    changed = true;
  }
  auto* seqs = next.mutable_sequencers();
  if (std::find(seqs->begin(), seqs->end(), endpoint) == seqs->end()) {
    seqs->Add(std::string(endpoint));
    changed = true;
  }
  if (!changed) {
    return NotFound("nothing to add: " + endpoint + " is already in every chain it could join " +
                    "and a sequencer in the layout of epoch " + std::to_string(current.epoch()));
  }
  bool listed = false;
  uint64_t max_id = 0;
  for (const auto& n : current.nodes()) {
    listed |= n.endpoint() == endpoint;
    max_id = std::max<uint64_t>(max_id, n.id());
  }
  if (!listed) {
    auto* n = next.add_nodes();
    n->set_id(max_id + 1);
    n->set_endpoint(endpoint);
  }
  return next;
}

namespace {

std::vector<std::string> UnitsOf(const proto::Layout& layout) {
  std::vector<std::string> out;
  for (const auto& seg : layout.segments()) {
    for (const auto& stripe : seg.stripes()) {
      for (const auto& u : stripe.log_units()) {
        if (std::find(out.begin(), out.end(), u) == out.end()) out.push_back(u);
      }
    }
  }
  return out;
}

// Seals `unit` at `epoch`, retrying transient errors until `deadline`.
Result<proto::SealResponse> SealUnit(net::Transport& transport, Threads& threads, Clock* clock,
                                     const std::string& unit, uint64_t epoch,
                                     std::chrono::milliseconds rpc_timeout, int64_t deadline) {
  auto channel = transport.Connect(unit);
  proto::SealRequest req;
  req.set_epoch(epoch);
  int64_t pause = 5'000'000;
  while (true) {
    auto r =
        internal::CallSync<proto::SealResponse>(*channel, "log.seal", req, rpc_timeout, threads);
    if (r.ok()) return r;
    // A unit already sealed at a later epoch: another reconfiguration won.
    if (!internal::IsTransient(r.status()) || clock->NowNanos() + pause >= deadline) {
      return r.status().WithContext("sealing " + unit + " at epoch " + std::to_string(epoch));
    }
    threads.SleepNanos(pause);
    pause = std::min<int64_t>(pause * 2, 200'000'000);
  }
}

}  // namespace

Result<std::map<std::string, proto::SealResponse>> SealUnits(net::Transport& transport,
                                                             const proto::Layout& next,
                                                             const ReconfigureOptions& options) {
  TALLY_RETURN_IF_ERROR(Layout::FromProto(next).status());
  Threads& threads = options.threads != nullptr ? *options.threads : *SystemThreads();
  Clock* clock = options.clock != nullptr ? options.clock : DefaultEnv().clock;
  const int64_t deadline =
      clock->NowNanos() +
      std::chrono::duration_cast<std::chrono::nanoseconds>(options.seal_deadline).count();
  std::map<std::string, proto::SealResponse> sealed;
  for (const auto& unit : UnitsOf(next)) {
    auto r = SealUnit(transport, threads, clock, unit, next.epoch(), options.rpc_timeout, deadline);
    if (!r.ok()) return r.status();
    sealed.emplace(unit, std::move(*r));
  }
  return sealed;
}

Result<proto::Layout> CommitLayout(net::Transport& transport, const proto::Layout& next,
                                   const ReconfigureOptions& options) {
  TALLY_RETURN_IF_ERROR(Layout::FromProto(next).status());
  if (next.layout_servers_size() == 0) {
    return InvalidArgument("the layout of epoch " + std::to_string(next.epoch()) +
                           " lists no layout servers; reconfiguration needs them");
  }
  Threads& threads = options.threads != nullptr ? *options.threads : *SystemThreads();
  std::vector<std::string> servers(next.layout_servers().begin(), next.layout_servers().end());
  log::LayoutProposer proposer(&transport, servers, options.proposer);
  log::ProposeOptions po;
  po.rpc_timeout = options.rpc_timeout;
  return WaitForValue<Result<proto::Layout>>(threads,
                                             [&](std::function<void(Result<proto::Layout>)> done) {
                                               proposer.ProposeLayout(next, po, std::move(done));
                                             });
}

Result<proto::Layout> Reconfigure(net::Transport& transport, const proto::Layout& next,
                                  const ReconfigureOptions& options) {
  TALLY_RETURN_IF_ERROR(Layout::FromProto(next).status());
  if (next.layout_servers_size() == 0) {
    return InvalidArgument("the layout of epoch " + std::to_string(next.epoch()) +
                           " lists no layout servers; reconfiguration needs them");
  }
  TALLY_RETURN_IF_ERROR(SealUnits(transport, next, options).status());
  return CommitLayout(transport, next, options);
}

Result<proto::Layout> FetchNewestLayout(net::Transport& transport,
                                        const std::vector<std::string>& layout_servers,
                                        std::chrono::milliseconds rpc_timeout, Threads* threads) {
  Threads& t = threads != nullptr ? *threads : *SystemThreads();
  return WaitForValue<Result<proto::Layout>>(
      t, [&](std::function<void(Result<proto::Layout>)> done) {
        log::FetchCommittedLayout(&transport, layout_servers, std::move(done), rpc_timeout);
      });
}

}  // namespace tally::client
