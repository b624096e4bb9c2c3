// How long a batch takes, for batch spacing (ClientOptions::batch_spacing):
// the shortest of the last kSamples batch times, i.e. what a batch takes
// when nothing holds it up. A mean would be pulled up by every batch that
// waited out a slow disk or a busy core; the longer spacing would then grow
// the batches that drain the backlog, making them slower too, so a stall
// of a few milliseconds would keep appends slow for tens more. A lasting
// slowdown still shows after kSamples batches.
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

  // 0 until a batch was added.
  int64_t BatchNanos() const {
    if (added_ == 0) return 0;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(added_, kSamples));
    return *std::min_element(recent_.begin(), recent_.begin() + n);
  }

 private:
  std::array<int64_t, kSamples> recent_{};
  uint64_t added_ = 0;
};

}  // namespace tally::client::internal

#endif  // TALLY_CLIENT_SRC_BATCH_PACE_H_
