#pragma once

// "host:port" parsing shared by the TCP client and server.

#include <cstdint>
#include <string>

#include "tally/base/result.h"

namespace tally::net::internal {

struct HostPort {
  std::string host;  // without brackets for IPv6 ("::1")
  uint16_t port = 0;
};

// Parses "host:port" or "[v6addr]:port". Returns InvalidArgument naming the
// endpoint when the port is missing or not a number in [0, 65535].
Result<HostPort> ParseEndpoint(const std::string& endpoint);

// Formats back to "host:port" / "[v6]:port".
std::string FormatEndpoint(const std::string& host, uint16_t port);

}  // namespace tally::net::internal
