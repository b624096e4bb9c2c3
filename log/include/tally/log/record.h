#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tally/base/ids.h"

namespace tally::log {

// What a record holds. Numbers are stored on disk: never renumber.
enum class RecordType : uint8_t {
  kData = 1,
  kHole = 2,
};

// One entry as the storage layer sees it: an address, the epoch it was
// written in, its stream tags (for the stream index) and opaque bytes (the
// serialized proto LogEntry, which the storage never parses).
struct Record {
  Address address;
  Epoch epoch;
  RecordType type = RecordType::kData;
  std::vector<StreamId> streams;
  std::string payload;
};

}  // namespace tally::log
