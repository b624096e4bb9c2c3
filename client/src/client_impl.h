#pragma once

// Client::Impl: the shared state of the client runtime (layout cache,
// channels, counters, append queue) and the retry plumbing. Private to
// client/. Split: client.cc (layout, reads, tails), client_append.cc
// (the batching append pipeline), chain.cc (the replication protocol).

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "batch_pace.h"
#include "chain.h"
#include "rpc.h"
#include "tally/client/client.h"
#include "tally/proto/sequencer.pb.h"

namespace tally::client {

namespace internal {

// One queued append.
struct PendingAppend {
  std::string payload;
  std::vector<StreamId> streams;
  std::vector<StreamId> key;  // `streams` sorted: appends batch when keys are equal
  AppendCallback done;
  int attempts = 0;
  int64_t deadline_nanos = 0;
};

// How a write down a chain went (RpcReplicaIo::WriteBatchDown): the units,
// from the head, that took every entry, and the answer of the next one.
struct DownOutcome {
  size_t clean = 0;
  Result<std::vector<Status>> stopped = Internal("no answer");
};

}  // namespace internal

struct Client::Impl {
  explicit Impl(ClientOptions o);

  // --- environment ---
  int64_t NowNanos() { return clock->NowNanos(); }
  void SleepNanos(int64_t nanos);
  int64_t DeadlineFromNow() const;

  // --- layout and channels ---
  std::shared_ptr<const Layout> CurrentLayout() const;
  std::shared_ptr<net::Channel> ChannelTo(const std::string& endpoint);
  // Asks every endpoint at once (layout.get) and returns the valid layout of
  // the highest epoch among every answer, or among a majority of the
  // endpoints once one of them served a layout. Unavailable, listing each
  // endpoint's error, when none did.
  Result<Layout> FetchNewestLayout(const std::vector<std::string>& endpoints);
  // Fetches the layout from every known endpoint and adopts it if its epoch
  // is newer than ours. Returns true if our epoch is now above `seen`.
  bool RefreshLayout(Epoch seen);

  // Calls `method` on `endpoint`, retrying transient errors with backoff
  // until `deadline_nanos`; then returns the last error, saying so.
  template <typename Resp, typename Req>
  Result<Resp> Call(const std::string& endpoint, const std::string& method, const Req& req,
                    int64_t deadline_nanos);

  // Runs `op` against the current layout; on WRONG_EPOCH/SEALED refreshes
  // the layout and runs it again, and retries transient errors, until the
  // retry deadline.
  template <typename T>
  Result<T> WithLayout(const std::function<Result<T>(const Layout&, int64_t deadline)>& op);

  // --- sequencer ---
  Result<proto::seq::NextResponse> SeqNext(const Layout& layout, uint32_t count,
                                           const std::vector<StreamId>& streams, int64_t deadline);
  Result<proto::seq::TailResponse> SeqTail(const Layout& layout,
                                           const std::vector<StreamId>& streams, int64_t deadline);

  // --- appends (client_append.cc) ---
  void StartAppendThreads();
  void StopAppendThreads();
  void Enqueue(std::unique_ptr<internal::PendingAppend> p, bool front);
  void AppendLoop();
  // Runs a batch cut at `cut` (clock nanos), calling BatchDone before
  // any of its appends' callbacks.
  void RunBatch(std::vector<std::unique_ptr<internal::PendingAppend>> batch, int64_t cut);
  // A batch cut at `cut` is finished: it leaves batches_in_flight and its
  // time joins `pace`.
  void BatchDone(int64_t cut);
  // The entries of `batch`, payloads moved in; their addresses and epoch
  // are set by PlaceEntries once the batch has its tokens.
  std::vector<proto::LogEntry> BatchEntries(
      std::vector<std::unique_ptr<internal::PendingAppend>>& batch);
  static void PlaceEntries(const proto::seq::NextResponse& grant, Epoch epoch,
                           std::vector<proto::LogEntry>& entries);
  // The usual start of a batch in one wake of the append thread: one
  // seq.next attempt for `entries` (built, not yet placed), and when it
  // grants every token and they all map to one chain, that chain's write
  // down from the head, sent from the network thread that received the
  // grant (RpcReplicaIo::WriteBatchDown's run). Anything else comes back as
  // it is, for the append thread to go on from.
  struct GrantedBatch {
    Result<proto::seq::NextResponse> grant = Internal("no answer");
    const Chain* chain = nullptr;  // when the write went down it
    internal::DownOutcome down;    // how it went
  };
  GrantedBatch GrantAndWriteHead(const std::shared_ptr<const Layout>& layout,
                                 const std::vector<StreamId>& streams,
                                 std::vector<proto::LogEntry>& entries);
  // After an epoch change failed `entry`'s write: finishes it at its own
  // address if the new layout's chain head holds it (returns the address);
  // nullopt when a new token is safe; an error when it is at the head but
  // its chain could not be completed.
  // Waits (until `deadline_nanos`) for a layout newer than the entry's
  // epoch first.
  Result<std::optional<Address>> CompleteInNewEpoch(const proto::LogEntry& entry,
                                                    int64_t deadline_nanos);

  ClientOptions options;
  Clock* clock;
  Random* random;
  Threads* threads;

  mutable std::mutex mu;
  std::shared_ptr<const Layout> layout;                                     // GUARDED_BY(mu)
  std::unordered_map<std::string, std::shared_ptr<net::Channel>> channels;  // GUARDED_BY(mu)

  internal::ChainCounters chain_counters;
  std::atomic<uint64_t> appends{0};
  std::atomic<uint64_t> sequencer_calls{0};
  std::atomic<uint64_t> tokens{0};
  std::atomic<uint64_t> layout_refreshes{0};

  std::mutex queue_mu;
  std::deque<std::unique_ptr<internal::PendingAppend>> queue;  // GUARDED_BY(queue_mu)
  // Wakes of append threads waiting for work (a condition variable built
  // on the Threads seam, so a simulation can run the append threads).
  std::vector<Threads::Wake> idle;  // GUARDED_BY(queue_mu)
  bool stopping = false;            // GUARDED_BY(queue_mu)
  // Batch spacing (ClientOptions::batch_spacing): when the last cut was,
  // whether it emptied the queue, whether a thread is sleeping until the
  // next cut, the batches cut and not yet done, and how long a batch takes.
  int64_t last_cut_nanos = 0;     // GUARDED_BY(queue_mu)
  bool last_cut_drained = false;  // GUARDED_BY(queue_mu)
  bool timing_cut = false;        // GUARDED_BY(queue_mu)
  int batches_in_flight = 0;      // GUARDED_BY(queue_mu)
  internal::BatchPace pace;       // GUARDED_BY(queue_mu)
  // The earliest time of the next cut (0: now); holds queue_mu.
  int64_t NextCutNanos() const;
  std::vector<std::unique_ptr<ThreadHandle>> append_threads;
};

// The ReplicaIo of one operation: RPCs to log units at `layout`'s epoch,
// transient errors retried until `deadline`.
class RpcReplicaIo final : public internal::ReplicaIo {
 public:
  RpcReplicaIo(Client::Impl* impl, const Layout& layout, int64_t deadline)
      : impl_(impl), layout_(layout), deadline_(deadline) {}

  Result<std::vector<Status>> WriteBatch(const std::string& unit,
                                         const std::vector<proto::LogEntry>& entries) override;
  size_t WriteBatchDown(const std::vector<std::string>& units,
                        const std::vector<proto::LogEntry>& entries,
                        Result<std::vector<Status>>* stopped) override;
  // The answer of the next WriteBatchDown, already run (GrantAndWriteHead):
  // that call returns it instead of sending anything.
  void SetRunDown(internal::DownOutcome outcome) { run_down_ = std::move(outcome); }
  Status Write(const std::string& unit, const proto::LogEntry& entry) override;
  Result<proto::LogEntry> Read(const std::string& unit, Address address) override;
  Status FillHole(const std::string& unit, Address address) override;
  Result<Address> GlobalTail() override;
  Epoch epoch() override { return layout_.epoch(); }
  int64_t NowNanos() override { return impl_->NowNanos(); }
  void SleepNanos(int64_t nanos) override { impl_->SleepNanos(nanos); }

 private:
  Client::Impl* impl_;
  const Layout& layout_;
  int64_t deadline_;
  std::optional<internal::DownOutcome> run_down_;
};

template <typename Resp, typename Req>
Result<Resp> Client::Impl::Call(const std::string& endpoint, const std::string& method,
                                const Req& req, int64_t deadline_nanos) {
  auto channel = ChannelTo(endpoint);
  internal::Backoff backoff(random, 200'000'000);
  const int64_t start = NowNanos();
  const Epoch epoch = CurrentLayout()->epoch();
  for (int failures = 1;; ++failures) {
    auto r = internal::CallSync<Resp>(*channel, method, req, options.rpc_timeout, *threads);
    if (r.ok() || !internal::IsTransient(r.status())) return r;
    // A node that stays unreachable may have been reconfigured away: if a
    // newer layout is out, restart the operation in it (WithLayout and the
    // append path treat this as a stale epoch).
    if (failures >= 2 && RefreshLayout(epoch)) {
      const Epoch now_epoch = CurrentLayout()->epoch();
      return WrongEpoch(method + " to " + endpoint + ": " + r.status().message() +
                        "; the layout moved on to epoch " + std::to_string(now_epoch.value()) +
                        ": retry in it")
          .WithCurrentEpoch(now_epoch.value());
    }
    const int64_t pause = backoff.NextNanos();
    const int64_t now = NowNanos();
    if (now + pause >= deadline_nanos) {
      return Status(r.status().code(),
                    method + " to " + endpoint + ": " + r.status().message() + "; gave up after " +
                        std::to_string((now - start) / 1'000'000) +
                        " ms of retries (retry_deadline); check that the node is up, or retry");
    }
    SleepNanos(pause);
  }
}

template <typename T>
Result<T> Client::Impl::WithLayout(
    const std::function<Result<T>(const Layout&, int64_t deadline)>& op) {
  const int64_t deadline = DeadlineFromNow();
  internal::Backoff backoff(random, 200'000'000);
  while (true) {
    std::shared_ptr<const Layout> current = CurrentLayout();
    Result<T> r = op(*current, deadline);
    if (r.ok()) return r;
    const Status& st = r.status();
    const bool epoch_error = internal::IsEpochError(st);
    if (!epoch_error && !internal::IsTransient(st)) return r;
    if (epoch_error && RefreshLayout(current->epoch())) continue;
    const int64_t pause = backoff.NextNanos();
    if (NowNanos() + pause >= deadline) {
      if (!epoch_error) return r;
      // Units sealed above our epoch, and no newer layout agreed: an epoch
      // change is under way or stalled. Not the caller's to fix (the client
      // follows epochs itself): transient.
      return Unavailable(st.message() + "; no layout newer than epoch " +
                         std::to_string(current->epoch().value()) +
                         " was agreed within retry_deadline (a reconfiguration is under way "
                         "or stalled); retry later");
    }
    SleepNanos(pause);
  }
}

}  // namespace tally::client
