#include "endpoint.h"

#include <charconv>

namespace tally::net::internal {

Result<HostPort> ParseEndpoint(const std::string& endpoint) {
  auto bad = [&](const char* why) {
    return InvalidArgument("endpoint '" + endpoint + "' " + why +
                           "; expected host:port, e.g. 127.0.0.1:7000");
  };
  const size_t colon = endpoint.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad("has no host:port form");
  std::string host = endpoint.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty()) return bad("has an empty host");
  const char* first = endpoint.data() + colon + 1;
  const char* last = endpoint.data() + endpoint.size();
  unsigned port = 0;
  auto [ptr, ec] = std::from_chars(first, last, port);
  if (first == last || ec != std::errc() || ptr != last || port > 65535) {
    return bad("has no valid port");
  }
  return HostPort{std::move(host), static_cast<uint16_t>(port)};
}

std::string FormatEndpoint(const std::string& host, uint16_t port) {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

}  // namespace tally::net::internal
