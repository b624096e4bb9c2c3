#pragma once

// The static layout a node is started with (--layout FILE): loading and
// checking it, and the layout.get method every node serves.

#include <optional>
#include <string>
#include <vector>

#include "tally/base/result.h"
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

// Registers layout.get, answering `layout` (or FailedPrecondition when it is
// empty: the node was started without --layout). `layout` is read by
// transport threads and must outlive `registry` and stay unchanged.
void RegisterLayoutService(net::ServiceRegistry& registry,
                           const std::optional<proto::Layout>* layout);

}  // namespace tally::server
