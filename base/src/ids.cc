#include "tally/base/ids.h"

#include <xxhash.h>

#include <cstdio>

namespace tally {

StreamId StreamId::FromName(std::string_view name) {
  XXH128_hash_t h = XXH3_128bits(name.data(), name.size());
  return StreamId{h.high64, h.low64};
}

std::string StreamId::ToHex() const {
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return std::string(buf, 32);
}

bool StreamId::FromHex(std::string_view hex, StreamId* out) {
  if (hex.size() != 32) return false;
  uint64_t parts[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    char c = hex[i];
    uint64_t d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return false;
    }
    parts[i / 16] = (parts[i / 16] << 4) | d;
  }
  out->hi = parts[0];
  out->lo = parts[1];
  return true;
}

std::string ToString(Address a) {
  if (a == kNoAddress) return "none";
  return std::to_string(a.value());
}
std::string ToString(Epoch e) { return std::to_string(e.value()); }
std::string ToString(NodeId n) { return std::to_string(n.value()); }

}  // namespace tally
