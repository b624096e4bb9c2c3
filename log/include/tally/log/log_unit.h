#pragma once

// The log unit: the RPC face of one node's SegmentStore (methods "log.*",
// see proto/tally/proto/logunit.proto and docs/rpc.md).
//
// Epochs fence: every request carries the sender's epoch; once the unit is
// sealed at epoch e, requests from epochs below e are refused with
// WRONG_EPOCH carrying e. A seal and the writes racing it are ordered: a
// write admitted before the seal is durable before the seal answers, and no
// write from an older epoch is admitted after it.

#include <memory>
#include <shared_mutex>

#include "tally/base/result.h"
#include "tally/log/segment_store.h"
#include "tally/net/transport.h"

namespace tally::log {

struct LogUnitOptions {
  SegmentStoreOptions store;
  uint32_t max_range_entries = 4096;  // per log.read_range answer at most
  // Threads for reads, seals and trims. 0: no pool; they run inline on the
  // thread that calls the handler (with store.inline_writes, every handler
  // then answers before it returns: the single-threaded simulation).
  uint32_t io_threads = 2;
};

class LogUnit {
 public:
  // Opens the store (recovering it) and starts the I/O threads, if any.
  static Result<std::unique_ptr<LogUnit>> Open(LogUnitOptions options,
                                               RecoveryReport* report = nullptr);
  ~LogUnit();

  // Registers the log.* handlers. `registry` must not outlive this unit.
  void Register(net::ServiceRegistry& registry);

  // Waits for every admitted write to be durable (used on shutdown).
  void Flush();

  SegmentStore& store() { return *store_; }

  struct Impl;

 private:
  explicit LogUnit(std::unique_ptr<Impl> impl, SegmentStore* store);
  std::unique_ptr<Impl> impl_;
  SegmentStore* store_;
};

}  // namespace tally::log
