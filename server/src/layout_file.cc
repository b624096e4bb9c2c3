#include "layout_file.h"

#include <google/protobuf/util/json_util.h>

#include <fstream>
#include <set>
#include <sstream>

#include "tally/net/typed.h"

namespace tally::server {

Result<proto::Layout> LoadLayoutFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return IoError("cannot read layout file " + path +
                   "; pass --layout with the path of a JSON tally.proto.Layout");
  }
  std::stringstream text;
  text << in.rdbuf();
  proto::Layout layout;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(text.str(), &layout, options);
  if (!st.ok()) {
    return Malformed("layout file " + path + " is not a tally.proto.Layout in JSON: " +
                     st.ToString() + "; see docs/operations.md for the format");
  }
  Status valid = ValidateLayout(layout);
  if (!valid.ok()) return valid.WithContext("layout file " + path);
  return layout;
}

Status ValidateLayout(const proto::Layout& layout) {
  if (layout.segments().empty()) {
    return InvalidArgument("the layout has no segments; add one with at least one stripe");
  }
  uint64_t next_start = layout.segments(0).start();
  for (int i = 0; i < layout.segments_size(); ++i) {
    const auto& seg = layout.segments(i);
    std::string name = "segment " + std::to_string(i);
    if (seg.start() != next_start) {
      return InvalidArgument(name + " starts at " + std::to_string(seg.start()) +
                             " but the previous one ends at " + std::to_string(next_start) +
                             "; segments must be contiguous and ascending");
    }
    bool last = i + 1 == layout.segments_size();
    if (seg.end() == 0 && !last) {
      return InvalidArgument(name + " is open-ended (end 0) but is not the last segment");
    }
    if (seg.end() != 0 && seg.end() <= seg.start()) {
      return InvalidArgument(name + " ends at " + std::to_string(seg.end()) +
                             ", not above its start " + std::to_string(seg.start()));
    }
    next_start = seg.end();
    if (seg.stripes().empty()) {
      return InvalidArgument(name + " has no stripes; give it at least one chain of log units");
    }
    for (int s = 0; s < seg.stripes_size(); ++s) {
      const auto& chain = seg.stripes(s).log_units();
      std::string stripe = name + " stripe " + std::to_string(s);
      if (chain.empty()) return InvalidArgument(stripe + " has an empty chain; list its log units");
      std::set<std::string> seen;
      for (const auto& ep : chain) {
        if (ep.empty()) return InvalidArgument(stripe + " lists an empty log unit endpoint");
        if (!seen.insert(ep).second) {
          return InvalidArgument(stripe + " lists log unit " + ep +
                                 " twice; a chain holds each unit once");
        }
      }
    }
  }
  return Status::OK();
}

std::vector<std::string> LogUnitEndpoints(const proto::Layout& layout) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& seg : layout.segments()) {
    for (const auto& stripe : seg.stripes()) {
      for (const auto& ep : stripe.log_units()) {
        if (seen.insert(ep).second) out.push_back(ep);
      }
    }
  }
  return out;
}

Result<proto::Layout> NewestLayout(const LayoutSources& sources) {
  std::optional<proto::Layout> best;
  if (sources.local != nullptr) {
    auto committed = sources.local->Committed(proto::LayoutCommittedRequest());
    if (committed.ok()) best = committed->layout();
  }
  if (sources.static_layout != nullptr && sources.static_layout->has_value()) {
    const proto::Layout& given = **sources.static_layout;
    if (!best || given.epoch() > best->epoch()) best = given;
  }
  if (!best) {
    return FailedPrecondition(
        sources.local != nullptr
            ? "no layout is committed on this layout server yet and the node was started "
              "without --layout; bootstrap the cluster with `tallyctl cluster bootstrap`"
            : "this node was started without --layout; ask a node that has one, or restart "
              "it with --layout FILE");
  }
  return *best;
}

void RegisterLayoutService(net::ServiceRegistry& registry, LayoutSources sources) {
  net::RegisterTyped<proto::GetLayoutRequest, proto::GetLayoutResponse>(
      registry, "layout.get", [sources](proto::GetLayoutRequest, auto out) {
        auto layout = NewestLayout(sources);
        if (!layout.ok()) {
          out.Fail(layout.status());
          return;
        }
        proto::GetLayoutResponse resp;
        *resp.mutable_layout() = std::move(*layout);
        out.Ok(resp);
      });
}

}  // namespace tally::server
