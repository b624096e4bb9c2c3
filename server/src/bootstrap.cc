#include "bootstrap.h"

#include <memory>
#include <mutex>
#include <unordered_map>

#include "layout_file.h"
#include "tally/base/address_map.h"
#include "tally/net/typed.h"

namespace tally::server {

namespace {

std::string ChainString(const proto::Layout::Stripe& stripe) {
  std::string out = "[";
  for (int i = 0; i < stripe.log_units_size(); ++i) {
    if (i) out += ", ";
    out += stripe.log_units(i);
  }
  return out + "]";
}

}  // namespace

Result<BootstrapState> MergeUnitViews(const proto::Layout& layout,
                                      const std::map<std::string, UnitView>& answered) {
  for (int i = 0; i < layout.segments_size(); ++i) {
    const auto& seg = layout.segments(i);
    for (int s = 0; s < seg.stripes_size(); ++s) {
      // The head: it holds every entry any unit of its chain holds (writes
      // go head first), including writes the old epoch left half done that
      // their writers or readers complete in this one. Another unit's view
      // misses those, and the streams would lose them.
      const auto& units = seg.stripes(s).log_units();
      if (units.empty() || answered.count(units[0]) == 0) {
        return Unavailable("the head of segment " + std::to_string(i) + " stripe " +
                           std::to_string(s) + " " + ChainString(seg.stripes(s)) +
                           " did not answer; start it, or reconfigure it out");
      }
    }
  }
  BootstrapState state;
  std::unordered_map<StreamId, AddressMap> merged;
  for (const auto& [endpoint, view] : answered) {
    // A unit trimmed past its last entry (every address up to the mark was
    // issued, some never written) still proves those addresses were issued.
    state.global_tail =
        Address(std::max({state.global_tail.value(), view.local_tail, view.trim_mark}));
    for (const auto& m : view.maps) {
      StreamId id{m.stream().hi(), m.stream().lo()};
      auto map =
          ParseAddressMap(m.roaring64(), "stream map of " + id.ToHex() + " from " + endpoint);
      if (!map.ok()) return map.status();
      merged[id] |= *map;
    }
    ++state.units;
  }
  state.streams.reserve(merged.size());
  for (auto& [id, map] : merged) {
    state.streams.push_back({id, SerializeAddressMap(std::move(map))});
  }
  return state;
}

std::map<std::string, UnitView> QueryLogUnits(const proto::Layout& layout,
                                              net::Transport* transport,
                                              std::chrono::milliseconds timeout,
                                              std::map<std::string, Status>* failures,
                                              Threads& threads) {
  // Answers land here from transport callbacks; the last one wakes us.
  struct Gather {
    std::mutex mu;
    std::map<std::string, Result<proto::TailResponse>> tails;       // GUARDED_BY(mu)
    std::map<std::string, Result<proto::StreamMapsResponse>> maps;  // GUARDED_BY(mu)
    size_t left = 0;                                                // GUARDED_BY(mu)
    Threads::Wake wake;                                             // GUARDED_BY(mu)
  };
  net::CallOptions options;
  options.timeout = timeout;
  proto::TailRequest tail_req;
  tail_req.set_epoch(layout.epoch());
  proto::StreamMapsRequest maps_req;
  maps_req.set_epoch(layout.epoch());

  const std::vector<std::string> endpoints = LogUnitEndpoints(layout);
  auto gather = std::make_shared<Gather>();
  gather->left = 2 * endpoints.size();
  auto arrived = [gather] {
    Threads::Wake wake;
    {
      std::lock_guard lock(gather->mu);
      if (--gather->left == 0) wake = gather->wake;
    }
    if (wake) wake();
  };
  // Every call completes by its deadline (the Channel contract), so this
  // wait is bounded by `timeout`.
  threads.Wait([&](Threads::Wake wake) {
    {
      std::lock_guard lock(gather->mu);
      gather->wake = wake;
      if (gather->left == 0) {
        wake();
        return;
      }
    }
    for (const auto& ep : endpoints) {
      std::shared_ptr<net::Channel> channel = transport->Connect(ep);
      net::CallTyped<proto::TailResponse>(*channel, "log.tail", tail_req, options,
                                          [gather, ep, arrived](Result<proto::TailResponse> r) {
                                            {
                                              std::lock_guard lock(gather->mu);
                                              gather->tails.emplace(ep, std::move(r));
                                            }
                                            arrived();
                                          });
      net::CallTyped<proto::StreamMapsResponse>(
          *channel, "log.stream_maps", maps_req, options,
          [gather, ep, arrived](Result<proto::StreamMapsResponse> r) {
            {
              std::lock_guard lock(gather->mu);
              gather->maps.emplace(ep, std::move(r));
            }
            arrived();
          });
    }
  });

  std::lock_guard lock(gather->mu);
  std::map<std::string, UnitView> answered;
  for (const auto& ep : endpoints) {
    Result<proto::TailResponse>& tail = gather->tails.at(ep);
    Result<proto::StreamMapsResponse>& maps = gather->maps.at(ep);
    if (!tail.ok()) {
      (*failures)[ep] = tail.status();
      continue;
    }
    if (!maps.ok()) {
      (*failures)[ep] = maps.status();
      continue;
    }
    UnitView view;
    view.local_tail = tail->local_tail();
    view.trim_mark = tail->trim_mark();
    view.maps.assign(maps->streams().begin(), maps->streams().end());
    answered.emplace(ep, std::move(view));
  }
  return answered;
}

}  // namespace tally::server
