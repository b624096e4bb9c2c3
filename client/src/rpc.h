#pragma once

// Blocking typed calls and the retry classification of the client runtime.
// Private to client/.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tally/base/env.h"
#include "tally/base/result.h"
#include "tally/base/status.h"
#include "tally/base/threads.h"
#include "tally/net/frame.h"
#include "tally/net/transport.h"
#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"

namespace tally::client::internal {

// Issues `method(req)` on `channel` and blocks (through `threads`) until the
// answer or the timeout. Must not run on a transport thread (it would wait
// for itself).
template <typename Resp, typename Req>
Result<Resp> CallSync(net::Channel& channel, const std::string& method, const Req& req,
                      std::chrono::milliseconds timeout, Threads& threads = *SystemThreads()) {
  net::CallOptions options;
  options.timeout = timeout;
  return WaitForValue<Result<Resp>>(threads, [&](std::function<void(Result<Resp>)> done) {
    net::CallTyped<Resp>(channel, method, req, options, std::move(done));
  });
}

// Errors that go away by themselves: the same request, sent again after a
// pause, can succeed (a sequencer that is not bootstrapped yet answers
// UNAVAILABLE too).
inline bool IsTransient(const Status& st) {
  switch (st.code()) {
    case Code::kTimeout:
    case Code::kUnavailable:
    case Code::kOverloaded:
      return true;
    default:
      return false;
  }
}

// Errors that mean our layout is stale (or the server's is newer than the
// sequencer's): refresh the layout and start the operation again.
inline bool IsEpochError(const Status& st) {
  return st.code() == Code::kWrongEpoch || st.code() == Code::kSealed;
}

// Exponential backoff with jitter: 1 ms doubling to `max`, each pause drawn
// from [d/2, d]. Not thread-safe; one per retry loop.
class Backoff {
 public:
  Backoff(Random* random, int64_t max_nanos) : random_(random), max_nanos_(max_nanos) {}
  int64_t NextNanos() {
    int64_t d = delay_nanos_;
    delay_nanos_ = std::min(delay_nanos_ * 2, max_nanos_);
    const uint64_t half = static_cast<uint64_t>(d / 2);
    return static_cast<int64_t>(half + (half == 0 ? 0 : random_->Uniform(half + 1)));
  }

 private:
  Random* random_;
  int64_t max_nanos_;
  int64_t delay_nanos_ = 1'000'000;
};

// The per-entry statuses of a log.write_batch answer from `unit` for `n`
// entries: all OK when the unit set all_ok, else one per entry; Malformed if
// the count does not match.
inline Result<std::vector<Status>> WriteBatchResults(const std::string& unit,
                                                     const proto::WriteBatchResponse& resp,
                                                     size_t n) {
  if (resp.all_ok() && resp.results_size() == 0) return std::vector<Status>(n);
  if (resp.all_ok() || resp.results_size() != static_cast<int>(n)) {
    return Malformed("log.write_batch on " + unit + " answered " +
                     std::to_string(resp.results_size()) + " results" +
                     (resp.all_ok() ? " and all_ok" : "") + " for " + std::to_string(n) +
                     " entries");
  }
  std::vector<Status> out;
  out.reserve(n);
  for (const auto& e : resp.results()) out.push_back(net::FromProto(e));
  return out;
}

}  // namespace tally::client::internal
