#include "bootstrap.h"

#include <future>
#include <memory>
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
      bool covered = false;
      for (const auto& ep : seg.stripes(s).log_units()) covered |= answered.count(ep) > 0;
      if (!covered) {
        return Unavailable("no log unit of segment " + std::to_string(i) + " stripe " +
                           std::to_string(s) + " " + ChainString(seg.stripes(s)) +
                           " answered; start at least one of them");
      }
    }
  }
  BootstrapState state;
  std::unordered_map<StreamId, AddressMap> merged;
  for (const auto& [endpoint, view] : answered) {
    state.global_tail = Address(std::max(state.global_tail.value(), view.local_tail));
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
                                              std::map<std::string, Status>* failures) {
  struct Pending {
    std::string endpoint;
    std::future<Result<proto::TailResponse>> tail;
    std::future<Result<proto::StreamMapsResponse>> maps;
  };
  net::CallOptions options;
  options.timeout = timeout;
  proto::TailRequest tail_req;
  tail_req.set_epoch(layout.epoch());
  proto::StreamMapsRequest maps_req;
  maps_req.set_epoch(layout.epoch());

  std::vector<Pending> pending;
  for (const auto& ep : LogUnitEndpoints(layout)) {
    std::shared_ptr<net::Channel> channel = transport->Connect(ep);
    auto tail = std::make_shared<std::promise<Result<proto::TailResponse>>>();
    auto maps = std::make_shared<std::promise<Result<proto::StreamMapsResponse>>>();
    pending.push_back({ep, tail->get_future(), maps->get_future()});
    net::CallTyped<proto::TailResponse>(
        *channel, "log.tail", tail_req, options,
        [tail](Result<proto::TailResponse> r) { tail->set_value(std::move(r)); });
    net::CallTyped<proto::StreamMapsResponse>(
        *channel, "log.stream_maps", maps_req, options,
        [maps](Result<proto::StreamMapsResponse> r) { maps->set_value(std::move(r)); });
  }
  // Every call completes by its deadline (the Channel contract), so these
  // waits are bounded by `timeout`.
  std::map<std::string, UnitView> answered;
  for (auto& p : pending) {
    Result<proto::TailResponse> tail = p.tail.get();
    Result<proto::StreamMapsResponse> maps = p.maps.get();
    if (!tail.ok()) {
      (*failures)[p.endpoint] = tail.status();
      continue;
    }
    if (!maps.ok()) {
      (*failures)[p.endpoint] = maps.status();
      continue;
    }
    UnitView view;
    view.local_tail = tail->local_tail();
    view.maps.assign(maps->streams().begin(), maps->streams().end());
    answered.emplace(p.endpoint, std::move(view));
  }
  return answered;
}

}  // namespace tally::server
