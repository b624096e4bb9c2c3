#pragma once

// The static layout a node is started with (--layout FILE): loading and
// checking it, and the layout.get method every node serves.

#include <optional>
#include <string>
#include <vector>

#include "tally/base/result.h"
#include "tally/log/layout_server.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"

namespace tally::server {

// Reads `path`, a tally.proto.Layout in protobuf's JSON mapping, and checks
// it with ValidateLayout. Errors (each naming the file): IoError (cannot
// read), Malformed (not a Layout in JSON), InvalidArgument (ValidateLayout).
Result<proto::Layout> LoadLayoutFile(const std::string& path);

// Checks the shape a node relies on: at least one segment; segments
// ascending and contiguous, only the last open-ended; every segment has
// stripes; every stripe a non-empty chain of non-empty endpoints with no
// endpoint twice. Errors: InvalidArgument naming the segment or stripe.
Status ValidateLayout(const proto::Layout& layout);

// Every distinct log unit endpoint of `layout`, in first-appearance order.
std::vector<std::string> LogUnitEndpoints(const proto::Layout& layout);

// Where a node's layout.get finds the layout it answers. Each member is
// optional; pointers are not owned and must outlive the registry.
struct LayoutSources {
  // The layout the node was started with (--layout); read-only.
  const std::optional<proto::Layout>* static_layout = nullptr;
  // The node's own layout server (layout role): its latest committed layout.
  log::LayoutServer* local = nullptr;
};

// Registers layout.get, answering the newest layout among `sources` (the
// highest epoch; the committed one on a tie). FailedPrecondition when none
// has one (no --layout and nothing committed yet: bootstrap the cluster).
void RegisterLayoutService(net::ServiceRegistry& registry, LayoutSources sources);

// The newest layout among `sources`, as layout.get answers it.
Result<proto::Layout> NewestLayout(const LayoutSources& sources);

}  // namespace tally::server
