#include "sequencer_role.h"

#include <spdlog/spdlog.h>

#include "bootstrap.h"
#include "tally/client/reconfigure.h"

namespace tally::server {

SequencerRole::SequencerRole(proto::Layout layout, net::Transport* transport,
                             SequencerRoleOptions options)
    : static_layout_(std::move(layout)),
      transport_(transport),
      options_(options),
      threads_(options.threads != nullptr ? options.threads : SystemThreads()) {}

SequencerRole::~SequencerRole() {
  stopping_ = true;
  if (thread_ != nullptr) thread_->Join();
}

void SequencerRole::Register(net::ServiceRegistry& registry) { service_.Register(registry); }

void SequencerRole::StartBootstrap(std::string self) {
  self_ = std::move(self);
  thread_ = threads_->Start("sequencer-" + self_, [this] { Loop(); });
}

proto::Layout SequencerRole::NewestLayout() {
  if (static_layout_.layout_servers().empty()) return static_layout_;
  std::vector<std::string> servers(static_layout_.layout_servers().begin(),
                                   static_layout_.layout_servers().end());
  auto committed = client::FetchNewestLayout(polled_, servers, options_.rpc_timeout, threads_);
  if (committed.ok() && committed->epoch() >= static_layout_.epoch()) return *committed;
  return static_layout_;
}

Status SequencerRole::TryBootstrap(const proto::Layout& layout) {
  std::map<std::string, Status> failures;
  auto answered = QueryLogUnits(layout, transport_, options_.rpc_timeout, &failures, *threads_);
  auto state = MergeUnitViews(layout, answered);
  if (!state.ok()) {
    std::string detail;
    for (const auto& [ep, st] : failures) detail += "; " + ep + ": " + st.ToString();
    return Status(state.status().code(), "bootstrap in epoch " + std::to_string(layout.epoch()) +
                                             ": " + state.status().message() + detail);
  }
  const size_t streams = state->streams.size();
  auto tail = core_.Bootstrap(Epoch(layout.epoch()), state->global_tail, std::move(state->streams));
  if (!tail.ok()) return tail.status().WithContext("bootstrapping the sequencer");
  spdlog::info(
      "sequencer bootstrapped in epoch {}: global tail {}, {} streams, from {} of {} log units",
      layout.epoch(), tail->value(), streams, state->units, state->units + failures.size());
  return Status::OK();
}

void SequencerRole::Loop() {
  const bool follow = !static_layout_.layout_servers().empty();
  std::chrono::milliseconds delay = options_.backoff_min;
  std::string last_error;
  for (int attempt = 1; !stopping_; ++attempt) {
    proto::Layout layout = NewestLayout();
    const bool primary = !layout.sequencers().empty() && layout.sequencers(0) == self_;
    const bool newer = !bootstrapped_ || layout.epoch() > epoch_.load();
    if (!newer || (follow && !primary)) {
      // Up to date, or a standby in this epoch: watch for the next one.
      if (!follow) return;
      if (SleepUnlessStopping(options_.layout_poll)) return;
      continue;
    }
    Status st = TryBootstrap(layout);
    if (st.ok()) {
      epoch_ = layout.epoch();
      bootstrapped_ = true;
      delay = options_.backoff_min;
      last_error.clear();
      if (!follow) return;
      continue;
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
