#pragma once

// Shared pieces of tallyctl's commands: global flags, exit codes, output.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tally/base/status.h"
#include "tally/proto/log_entry.pb.h"

namespace tally::ctl {

struct Globals {
  std::string endpoints;  // comma-separated HOST:PORT list (flag or TALLY_ENDPOINTS)
  uint64_t epoch = 0;     // for the per-unit commands
  std::string output = "text";
  uint32_t timeout_ms = 5000;
  bool json() const { return output == "json"; }
  // The endpoints as a list; empty entries dropped.
  std::vector<std::string> EndpointList() const;
};

// Exit codes: 0 success, 1 the operation failed, 2 usage error, 3 the
// address holds no data (hole, trimmed, unwritten).
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;
inline constexpr int kExitNoData = 3;

// Prints `st` (stderr in text mode as "<who>: CODE: message", a JSON object
// {"error", "message", "retryable"} on stdout in json mode) and returns
// kExitFailed.
int Fail(bool json, const Status& st, std::string_view who = "tallyctl");
inline int Fail(const Globals& g, const Status& st) { return Fail(g.json(), st); }

// An entry as a JSON object: address, epoch, type, streams (hex), data.
std::string EntryJson(const proto::LogEntry& e);

// Prints the "no data here" answer for `address` and returns kExitNoData;
// `what` is "hole", "trimmed" or "unwritten".
int NoData(const Globals& g, uint64_t address, const std::string& what);

}  // namespace tally::ctl
