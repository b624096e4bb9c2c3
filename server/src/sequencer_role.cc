#include "sequencer_role.h"

#include <spdlog/spdlog.h>

#include "bootstrap.h"

namespace tally::server {

SequencerRole::SequencerRole(proto::Layout layout, net::Transport* transport,
                             SequencerRoleOptions options)
    : layout_(std::move(layout)),
      transport_(transport),
      options_(options),
      threads_(options.threads != nullptr ? options.threads : SystemThreads()) {}

SequencerRole::~SequencerRole() {
  stopping_ = true;
  if (thread_ != nullptr) thread_->Join();
}

void SequencerRole::Register(net::ServiceRegistry& registry) { service_.Register(registry); }

void SequencerRole::StartBootstrap() {
  thread_ = threads_->Start("sequencer-bootstrap", [this] { BootstrapLoop(); });
}

Status SequencerRole::TryBootstrap() {
  std::map<std::string, Status> failures;
  auto answered = QueryLogUnits(layout_, transport_, options_.rpc_timeout, &failures, *threads_);
  auto state = MergeUnitViews(layout_, answered);
  if (!state.ok()) {
    std::string detail;
    for (const auto& [ep, st] : failures) detail += "; " + ep + ": " + st.ToString();
    return Status(state.status().code(), "bootstrap in epoch " + std::to_string(layout_.epoch()) +
                                             ": " + state.status().message() + detail);
  }
  const size_t streams = state->streams.size();
  auto tail =
      core_.Bootstrap(Epoch(layout_.epoch()), state->global_tail, std::move(state->streams));
  if (!tail.ok()) return tail.status().WithContext("bootstrapping the sequencer");
  spdlog::info(
      "sequencer bootstrapped in epoch {}: global tail {}, {} streams, from {} of {} log units",
      layout_.epoch(), tail->value(), streams, state->units, state->units + failures.size());
  return Status::OK();
}

void SequencerRole::BootstrapLoop() {
  std::chrono::milliseconds delay = options_.backoff_min;
  std::string last_error;
  for (int attempt = 1;; ++attempt) {
    if (stopping_) return;
    Status st = TryBootstrap();
    if (st.ok()) {
      bootstrapped_ = true;
      return;
    }
    // Say it once per distinct reason; repeats go to debug.
    if (st.message() != last_error) {
      spdlog::warn("sequencer not bootstrapped yet (attempt {}; retrying with backoff): {}",
                   attempt, st.ToString());
      last_error = st.message();
    } else {
      spdlog::debug("sequencer bootstrap attempt {} failed: {}", attempt, st.ToString());
    }
    if (SleepUnlessStopping(delay)) return;
    delay = std::min(delay * 2, options_.backoff_max);
  }
}

bool SequencerRole::SleepUnlessStopping(std::chrono::milliseconds delay) {
  constexpr int64_t kSliceNanos = 20'000'000;
  int64_t left = std::chrono::duration_cast<std::chrono::nanoseconds>(delay).count();
  while (left > 0 && !stopping_) {
    const int64_t slice = std::min(left, kSliceNanos);
    threads_->SleepNanos(slice);
    left -= slice;
  }
  return stopping_;
}

}  // namespace tally::server
