#include "write_batch_pipeline.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"

namespace tally::bench {

namespace {

[[noreturn]] void Die(const char* what, const Status& st) {
  std::fprintf(stderr, "bench: %s: %s\n", what, st.ToString().c_str());
  std::exit(1);
}

}  // namespace

WriteBatchPipeline::WriteBatchPipeline(net::Channel& channel, std::string payload, int batch,
                                       int depth, uint64_t first_address)
    : channel_(channel),
      payload_(std::move(payload)),
      batch_(batch),
      depth_(depth),
      next_address_(first_address) {}

WriteBatchPipeline::~WriteBatchPipeline() { Stop(); }

void WriteBatchPipeline::Start() {
  for (int i = 0; i < depth_; ++i) Issue();
}

void WriteBatchPipeline::Stop() {
  stop_ = true;
  while (outstanding_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void WriteBatchPipeline::Issue() {
  proto::WriteBatchRequest req;
  req.set_epoch(0);
  uint64_t base = next_address_.fetch_add(batch_);
  for (int i = 0; i < batch_; ++i) {
    auto* e = req.add_entries();
    e->set_address(base + i);
    e->set_type(proto::DATA);
    e->set_payload(payload_);
  }
  auto t0 = BenchClock::now();
  outstanding_++;
  net::CallTyped<proto::WriteBatchResponse>(
      channel_, "log.write_batch", req, net::CallOptions{},
      [this, t0](Result<proto::WriteBatchResponse> r) {
        if (!r.ok()) Die("log.write_batch", r.status());
        for (const auto& e : r->results()) {
          if (e.code() != proto::OK) Die("log.write_batch entry", Internal(e.message()));
        }
        if (!r->all_ok() && r->results_size() != batch_) {
          Die("log.write_batch", Malformed("answer without all_ok or a result per entry"));
        }
        if (measuring_.load()) {
          latencies_.Record(MicrosSince(t0), batch_);
          acked_.fetch_add(batch_);
        }
        if (!stop_.load()) Issue();
        outstanding_--;
      });
}

}  // namespace tally::bench
