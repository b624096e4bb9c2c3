#pragma once

// A log unit's group-commit latency histogram (from its log.stats answer,
// docs/log-unit.md) and the arithmetic monitoring needs on it: the window
// between two answers, several units pooled, quantiles.

#include <cstdint>
#include <vector>

#include "tally/base/result.h"
#include "tally/proto/logunit.pb.h"

namespace tally::client {

struct CommitHistogram {
  std::vector<uint64_t> le_us;   // bucket upper bounds, ascending; the last is UINT64_MAX
  std::vector<uint64_t> counts;  // commits per bucket
  uint64_t commits = 0;
  uint64_t records = 0;
  uint64_t bytes = 0;
  uint64_t sum_us = 0;

  // Checks the answer's histogram (as many counts as bounds, bounds
  // ascending, at least one below the last, which is UINT64_MAX, counts
  // adding up to `commits`).
  static Result<CommitHistogram> From(const proto::StatsResponse& stats);

  // What happened between `earlier` and this (both from one unit, which
  // has not restarted in between). InvalidArgument if the bounds differ or
  // a counter went down (the unit restarted).
  Result<CommitHistogram> Since(const CommitHistogram& earlier) const;

  // Adds `other` (another unit, same bounds) into this; InvalidArgument if
  // the bounds differ. An empty histogram takes `other`'s bounds.
  Status Merge(const CommitHistogram& other);

  // The smallest bucket bound that at least a fraction q (0 < q <= 1) of
  // the commits took no longer than: an upper bound on the q-quantile. 0
  // with no commits; UINT64_MAX if it falls in the last (unbounded) bucket.
  uint64_t QuantileLeUs(double q) const;

  double MeanUs() const { return commits == 0 ? 0.0 : static_cast<double>(sum_us) / commits; }
};

}  // namespace tally::client
