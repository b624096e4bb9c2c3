#include "tally/client/layout.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <set>

namespace tally::client {

namespace {

std::string RangeText(uint64_t start, uint64_t end) {
  return "[" + std::to_string(start) + ", " +
         (end == 0 ? std::string("...") : std::to_string(end)) + ")";
}

}  // namespace

Result<Layout> Layout::FromProto(proto::Layout layout) {
  const std::string where = "layout (epoch " + std::to_string(layout.epoch()) + ")";
  if (layout.sequencers_size() == 0) {
    return InvalidArgument(where +
                           " names no sequencer; list at least one endpoint in 'sequencers'");
  }
  for (const auto& s : layout.sequencers()) {
    if (s.empty()) return InvalidArgument(where + " has an empty sequencer endpoint; remove it");
  }
  if (layout.segments_size() == 0) {
    return InvalidArgument(where + " has no segment; add one with 'start' 0 and 'end' 0 (open)");
  }
  Layout out;
  const int n = layout.segments_size();
  for (int i = 0; i < n; ++i) {
    const auto& seg = layout.segments(i);
    const std::string seg_name = "segment " + RangeText(seg.start(), seg.end());
    const bool last = i == n - 1;
    if (seg.end() == 0 && !last) {
      return InvalidArgument(where + ": " + seg_name +
                             " is open-ended but not the last segment; give it an 'end'");
    }
    if (seg.end() != 0 && last) {
      return InvalidArgument(where + ": the last " + seg_name +
                             " has an end; the last segment must be open-ended ('end' 0)");
    }
    if (seg.end() != 0 && seg.end() <= seg.start()) {
      return InvalidArgument(where + ": " + seg_name + " ends at or before its start");
    }
    if (i > 0) {
      const auto& prev = layout.segments(i - 1);
      if (seg.start() < prev.end()) {
        return InvalidArgument(where + ": segments " + RangeText(prev.start(), prev.end()) +
                               " and " + RangeText(seg.start(), seg.end()) +
                               " overlap; segments must be ascending and disjoint");
      }
      if (seg.start() > prev.end()) {
        return InvalidArgument(where + ": gap between segments " +
                               RangeText(prev.start(), prev.end()) + " and " +
                               RangeText(seg.start(), seg.end()) +
                               "; each segment must start where the previous one ends");
      }
    }
    if (seg.stripes_size() == 0) {
      return InvalidArgument(where + ": " + seg_name + " has no stripe; add at least one chain");
    }
    Segment parsed;
    parsed.start = Address(seg.start());
    parsed.end = seg.end() == 0 ? kNoAddress : Address(seg.end());
    for (int k = 0; k < seg.stripes_size(); ++k) {
      const auto& units = seg.stripes(k).log_units();
      const std::string stripe_name = seg_name + " stripe " + std::to_string(k);
      if (units.empty()) {
        return InvalidArgument(where + ": " + stripe_name +
                               " has an empty chain; list at least one log unit");
      }
      std::set<std::string> seen;
      for (const auto& u : units) {
        if (u.empty()) {
          return InvalidArgument(where + ": " + stripe_name + " has an empty log unit endpoint");
        }
        if (!seen.insert(u).second) {
          return InvalidArgument(where + ": " + stripe_name + " lists " + u +
                                 " twice; a chain needs distinct log units");
        }
      }
      parsed.stripes.emplace_back(units.begin(), units.end());
    }
    out.segments_.push_back(std::move(parsed));
  }
  out.proto_ = std::move(layout);
  return out;
}

Result<Layout> Layout::FromJson(std::string_view json) {
  proto::Layout layout;
  auto st = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &layout);
  if (!st.ok()) {
    return Malformed("layout JSON does not parse: " + st.ToString() +
                     "; expected protobuf's JSON form of tally.proto.Layout");
  }
  return FromProto(std::move(layout));
}

Result<Layout> Layout::FromFile(const std::string& path, FileSystem* fs) {
  if (fs == nullptr) fs = DefaultEnv().fs;
  OpenOptions options;
  options.read_only = true;
  auto file = fs->Open(path, options);
  if (!file.ok()) return file.status().WithContext("layout file " + path);
  TALLY_ASSIGN_OR_RETURN(uint64_t size, (*file)->Size());
  std::string bytes(size, '\0');
  TALLY_ASSIGN_OR_RETURN(size_t got, (*file)->Read(0, std::span<char>(bytes.data(), bytes.size())));
  bytes.resize(got);
  auto layout = FromJson(bytes);
  if (!layout.ok()) return layout.status().WithContext("layout file " + path);
  return layout;
}

const Chain& Layout::ChainFor(Address address) const {
  // Segments are contiguous and ascending: the last one starting at or
  // below the address holds it (the first one for addresses below it).
  auto it = std::upper_bound(segments_.begin(), segments_.end(), address,
                             [](Address a, const Segment& s) { return a < s.start; });
  const Segment& seg = it == segments_.begin() ? segments_.front() : *(it - 1);
  return seg.stripes[address.value() % seg.stripes.size()];
}

std::vector<std::string> Layout::Endpoints() const {
  std::vector<std::string> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& e) {
    if (!e.empty() && seen.insert(e).second) out.push_back(e);
  };
  for (const auto& s : proto_.sequencers()) add(s);
  for (const auto& seg : segments_) {
    for (const auto& chain : seg.stripes) {
      for (const auto& u : chain) add(u);
    }
  }
  for (const auto& s : proto_.layout_servers()) add(s);
  for (const auto& n : proto_.nodes()) add(n.endpoint());
  return out;
}

}  // namespace tally::client
