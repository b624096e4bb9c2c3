#include "tally/client/unit_stats.h"

#include <fmt/format.h>

#include <cmath>

namespace tally::client {

Result<CommitHistogram> CommitHistogram::From(const proto::StatsResponse& stats) {
  CommitHistogram h;
  h.le_us.assign(stats.commit_bucket_le_us().begin(), stats.commit_bucket_le_us().end());
  h.counts.assign(stats.commit_bucket_counts().begin(), stats.commit_bucket_counts().end());
  if (h.le_us.size() != h.counts.size()) {
    return InvalidArgument(fmt::format(
        "log.stats answer has {} commit bucket bounds but {} counts; the unit sent a malformed "
        "histogram",
        h.le_us.size(), h.counts.size()));
  }
  if (h.le_us.size() < 2 || h.le_us.back() != UINT64_MAX) {
    return InvalidArgument(
        "log.stats answer's commit buckets are not bounded ones followed by one unbounded "
        "bucket; the unit sent a malformed histogram");
  }
  uint64_t total = 0;
  for (size_t i = 0; i < h.le_us.size(); ++i) {
    if (i > 0 && h.le_us[i] <= h.le_us[i - 1]) {
      return InvalidArgument(
          fmt::format("log.stats answer's commit bucket bounds are not ascending ({} after {})",
                      h.le_us[i], h.le_us[i - 1]));
    }
    total += h.counts[i];
  }
  if (total != stats.commits()) {
    return InvalidArgument(
        fmt::format("log.stats answer counts {} commits in its buckets but reports {}", total,
                    stats.commits()));
  }
  h.commits = stats.commits();
  h.records = stats.commit_records();
  h.bytes = stats.commit_bytes();
  h.sum_us = stats.commit_sum_us();
  return h;
}

Result<CommitHistogram> CommitHistogram::Since(const CommitHistogram& earlier) const {
  if (earlier.le_us != le_us) {
    return InvalidArgument(
        "commit histograms have different bucket bounds; compare answers of "
        "one unit");
  }
  CommitHistogram d = *this;
  bool went_down = commits < earlier.commits || records < earlier.records ||
                   bytes < earlier.bytes || sum_us < earlier.sum_us;
  for (size_t i = 0; i < counts.size() && !went_down; ++i) {
    went_down = counts[i] < earlier.counts[i];
    d.counts[i] = counts[i] - earlier.counts[i];
  }
  if (went_down) {
    return InvalidArgument(
        "a commit counter went down between the two log.stats answers: the unit restarted in "
        "between; take both answers again");
  }
  d.commits -= earlier.commits;
  d.records -= earlier.records;
  d.bytes -= earlier.bytes;
  d.sum_us -= earlier.sum_us;
  return d;
}

Status CommitHistogram::Merge(const CommitHistogram& other) {
  if (le_us.empty()) {
    le_us = other.le_us;
    counts.assign(le_us.size(), 0);
  }
  if (other.le_us != le_us) {
    return InvalidArgument("commit histograms have different bucket bounds; cannot pool them");
  }
  for (size_t i = 0; i < counts.size(); ++i) counts[i] += other.counts[i];
  commits += other.commits;
  records += other.records;
  bytes += other.bytes;
  sum_us += other.sum_us;
  return Status::OK();
}

uint64_t CommitHistogram::QuantileLeUs(double q) const {
  if (commits == 0) return 0;
  const auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(commits)));
  uint64_t seen = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    seen += counts[i];
    if (seen >= std::max<uint64_t>(rank, 1)) return le_us[i];
  }
  return le_us.back();
}

}  // namespace tally::client
