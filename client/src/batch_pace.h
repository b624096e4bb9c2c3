// How long a batch takes, for batch spacing (ClientOptions::batch_spacing):
// the median of the last kSamples batch times. The mean used before was
// pulled up by every batch that waited out a slow disk or a busy core; the
// longer spacing then grew the batches that drained the backlog, making
// them slower too, so a stall of a few milliseconds kept appends slow for
// tens more. The median ignores such batches while they are fewer than half of
// the window, and follows a lasting slowdown once they are not (the
// shortest batch time, tried too, follows it only after kSamples batches:
// meanwhile the spacing is too short and the threads fall into step).
//
// Not thread-safe (the client guards it with its queue mutex).

#ifndef TALLY_CLIENT_SRC_BATCH_PACE_H_
#define TALLY_CLIENT_SRC_BATCH_PACE_H_

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>

namespace tally::client::internal {

class BatchPace {
 public:
  static constexpr size_t kSamples = 16;

  void Add(int64_t batch_nanos) {
    recent_[added_ % kSamples] = batch_nanos;
    ++added_;
  }

  // The median (the upper one of an even count) of the last kSamples
  // batch times; 0 until a batch was added.
  int64_t BatchNanos() const {
    if (added_ == 0) return 0;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(added_, kSamples));
    std::array<int64_t, kSamples> sorted = recent_;
    std::nth_element(sorted.begin(), sorted.begin() + n / 2, sorted.begin() + n);
    return sorted[n / 2];
  }

 private:
  std::array<int64_t, kSamples> recent_{};
  uint64_t added_ = 0;
};

}  // namespace tally::client::internal

#endif  // TALLY_CLIENT_SRC_BATCH_PACE_H_
