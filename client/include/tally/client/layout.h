#pragma once

// A validated, read-only view of a tally.proto.Layout: who serves which
// address in one epoch. Clients cache one and replace it wholesale when a
// server answers WRONG_EPOCH with a newer epoch (docs/protocol.md).

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "tally/base/env.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/proto/layout.pb.h"

namespace tally::client {

// One replica chain: log unit endpoints, head first, tail last.
using Chain = std::vector<std::string>;

// Immutable after construction, so safe to share between threads.
class Layout {
 public:
  // Validates `layout`. Errors (InvalidArgument, naming the part and the
  // fix): no sequencer, an empty endpoint, no segment, a segment without
  // stripes, an empty chain, an endpoint twice in one chain, a segment whose
  // end is not above its start, segments out of order, overlapping or with a
  // gap between them, an open-ended (end 0) segment that is not the last,
  // a last segment that is not open-ended.
  static Result<Layout> FromProto(proto::Layout layout);

  // Parses protobuf's JSON mapping of tally.proto.Layout, then validates.
  // Errors: Malformed (the JSON does not parse), InvalidArgument as FromProto.
  static Result<Layout> FromJson(std::string_view json);

  // Reads a JSON layout file through `fs` (nullptr: DefaultEnv().fs).
  // Errors: NotFound/IoError from the file system, then as FromJson.
  static Result<Layout> FromFile(const std::string& path, FileSystem* fs = nullptr);

  Epoch epoch() const { return Epoch(proto_.epoch()); }
  const proto::Layout& proto() const { return proto_; }

  // The primary sequencer's endpoint.
  const std::string& primary_sequencer() const { return proto_.sequencers(0); }

  // The chain serving `address`: the stripe `address % stripes` of the
  // segment holding it. Every address maps to a chain: validation makes the
  // segments contiguous and the last one open-ended, and addresses below
  // the first segment (trimmed history) map to the first one.
  const Chain& ChainFor(Address address) const;

  // Segments, for range scans: [start, end) with end == kNoAddress when open.
  struct Segment {
    Address start;
    Address end;
    std::vector<Chain> stripes;
  };
  const std::vector<Segment>& segments() const { return segments_; }

  // Every endpoint the layout names (sequencers, log units, layout servers,
  // nodes), deduplicated, in first-seen order: where to ask layout.get.
  std::vector<std::string> Endpoints() const;

 private:
  Layout() = default;

  proto::Layout proto_;
  std::vector<Segment> segments_;
};

}  // namespace tally::client
