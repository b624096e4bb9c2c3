// The append pipeline: a queue drained by append threads, each taking the
// appends queued with one stream set (up to max_batch) as one batch: one
// seq.next for all of them, then one log.write_batch per chain unit, head
// to tail (chain.cc). Appends that lose their token to a hole filler go back
// to the front of the queue for a new one.

#include <algorithm>
#include <map>

#include "client_impl.h"
#include "tally/sequencer/sequencer.h"

namespace tally::client {

using internal::PendingAppend;

void Client::Impl::StartAppendThreads() {
  for (int i = 0; i < options.append_threads; ++i) {
    append_threads.push_back(
        threads->Start("append-" + std::to_string(i), [this] { AppendLoop(); }));
  }
}

void Client::Impl::StopAppendThreads() {
  std::vector<Threads::Wake> wakes;
  {
    std::lock_guard lock(queue_mu);
    stopping = true;
    wakes.swap(idle);
  }
  for (auto& wake : wakes) wake();
  for (auto& t : append_threads) t->Join();
  append_threads.clear();
  std::deque<std::unique_ptr<PendingAppend>> left;
  {
    std::lock_guard lock(queue_mu);
    left.swap(queue);
  }
  for (auto& p : left) p->done(Cancelled("client destroyed with the append still queued"));
}

void Client::Impl::Enqueue(std::unique_ptr<PendingAppend> p, bool front) {
  {
    std::unique_lock lock(queue_mu);
    if (!stopping) {
      if (front) {
        queue.push_front(std::move(p));
      } else {
        queue.push_back(std::move(p));
      }
      Threads::Wake wake;
      // A thread timing the next cut takes this append with it.
      if (!idle.empty() && !timing_cut) {
        wake = std::move(idle.back());
        idle.pop_back();
      }
      lock.unlock();
      if (wake) wake();
      return;
    }
  }
  p->done(Cancelled("client is shutting down; append not issued"));
}

int64_t Client::Impl::NextCutNanos() const {
  // Spacing is for cuts while other batches are on their way: with none in
  // flight (a lone caller, a lull) or a single thread, cut at once.
  if (!last_cut_drained || batches_in_flight == 0 || options.append_threads < 2 ||
      options.batch_spacing <= 0) {
    return 0;
  }
  const int64_t batch = pace.BatchNanos();
  if (batch == 0) return 0;
  const double gap = options.batch_spacing * static_cast<double>(batch) / options.append_threads;
  return last_cut_nanos + static_cast<int64_t>(gap);
}

void Client::Impl::AppendLoop() {
  while (true) {
    std::vector<std::unique_ptr<PendingAppend>> batch;
    int64_t cut = 0;
    {
      std::unique_lock lock(queue_mu);
      while (true) {
        // Idle while there is nothing to cut, or another thread is timing
        // the next cut.
        while (!stopping && (queue.empty() || timing_cut)) {
          lock.unlock();
          threads->Wait([this](Threads::Wake wake) {
            std::unique_lock l(queue_mu);
            if (stopping || (!queue.empty() && !timing_cut)) {
              l.unlock();
              wake();
            } else {
              idle.push_back(std::move(wake));
            }
          });
          lock.lock();
        }
        if (stopping) return;
        const int64_t next = NextCutNanos();
        cut = NowNanos();
        if (cut >= next) break;
        // Too soon after a cut that emptied the queue: let more arrive.
        // Nobody else cuts meanwhile, so the queue only grows.
        timing_cut = true;
        lock.unlock();
        threads->SleepNanos(next - cut);
        lock.lock();
        timing_cut = false;
      }
      batch.push_back(std::move(queue.front()));
      queue.pop_front();
      const auto& key = batch.front()->key;
      for (auto it = queue.begin(); it != queue.end() && batch.size() < options.max_batch;) {
        if ((*it)->key == key) {
          batch.push_back(std::move(*it));
          it = queue.erase(it);
        } else {
          ++it;
        }
      }
      last_cut_nanos = cut;
      last_cut_drained = queue.empty();
      batches_in_flight++;
      // Appends left behind (other stream sets, over max_batch) go to an
      // idle thread at once.
      if (!queue.empty() && !idle.empty()) {
        Threads::Wake wake = std::move(idle.back());
        idle.pop_back();
        lock.unlock();
        wake();
      }
    }
    RunBatch(std::move(batch), cut);
  }
}

void Client::Impl::BatchDone(int64_t cut) {
  const int64_t took = NowNanos() - cut;
  std::lock_guard lock(queue_mu);
  batches_in_flight--;
  pace.Add(took);
}

std::vector<proto::LogEntry> Client::Impl::BatchEntries(
    std::vector<std::unique_ptr<internal::PendingAppend>>& batch) {
  const int64_t wall = clock->WallNanos();
  std::vector<proto::LogEntry> entries(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    proto::LogEntry& e = entries[i];
    e.set_type(proto::DATA);
    for (const auto& s : batch[i]->streams) {
      auto* id = e.add_streams();
      id->set_hi(s.hi);
      id->set_lo(s.lo);
    }
    e.set_payload(std::move(batch[i]->payload));
    e.mutable_metadata()->set_principal(options.principal);
    e.mutable_metadata()->set_wall_time_nanos(wall);
  }
  return entries;
}

void Client::Impl::PlaceEntries(const proto::seq::NextResponse& grant, Epoch epoch,
                                std::vector<proto::LogEntry>& entries) {
  for (size_t i = 0; i < entries.size(); ++i) {
    entries[i].set_address(grant.first_address() + i);
    entries[i].set_epoch(epoch.value());
  }
}

void Client::Impl::RunBatch(std::vector<std::unique_ptr<PendingAppend>> batch, int64_t cut) {
  const uint32_t n = static_cast<uint32_t>(batch.size());
  std::vector<proto::LogEntry> entries = BatchEntries(batch);
  std::shared_ptr<const Layout> layout = CurrentLayout();
  GrantedBatch first = GrantAndWriteHead(layout, batch.front()->streams, entries);
  if (!first.grant.ok()) {
    // Tokens on the retrying path: the layout refreshed on epoch errors,
    // transient errors retried with backoff.
    std::shared_ptr<const Layout> used;
    auto grant = WithLayout<proto::seq::NextResponse>([&](const Layout&, int64_t deadline) {
      used = CurrentLayout();
      return SeqNext(*used, n, batch.front()->streams, deadline);
    });
    if (!grant.ok()) {
      BatchDone(cut);
      for (auto& p : batch) p->done(grant.status().WithContext("seq.next"));
      return;
    }
    layout = std::move(used);
    PlaceEntries(*grant, layout->epoch(), entries);
  }
  tokens += n;

  std::vector<Status> results(n);
  RpcReplicaIo io(this, *layout, DeadlineFromNow());
  if (first.chain != nullptr) {
    // Sent down the chain already: WriteChain goes on from its answer.
    io.SetRunDown(std::move(first.down));
    results = internal::WriteChain(io, *first.chain, entries, &chain_counters);
  } else {
    // One WriteChain per chain the grant touches (one per stripe).
    std::map<const Chain*, std::vector<uint32_t>> by_chain;
    for (uint32_t i = 0; i < n; ++i) {
      by_chain[&layout->ChainFor(Address(entries[i].address()))].push_back(i);
    }
    if (by_chain.size() == 1) {
      // One chain (one stripe, or a batch within one): write the entries as
      // they are, without regrouping (a copy of every entry).
      results = internal::WriteChain(io, *by_chain.begin()->first, entries, &chain_counters);
      by_chain.clear();
    }
    for (const auto& [chain, idxs] : by_chain) {
      std::vector<proto::LogEntry> group;
      group.reserve(idxs.size());
      for (uint32_t i : idxs) group.push_back(entries[i]);
      std::vector<Status> st = internal::WriteChain(io, *chain, group, &chain_counters);
      for (size_t k = 0; k < idxs.size(); ++k) results[idxs[k]] = std::move(st[k]);
    }
  }

  // Done before any caller hears back: a caller whose next append follows
  // its answer finds no batch in flight (and is not spaced).
  BatchDone(cut);
  bool refreshed = false;
  for (uint32_t i = 0; i < n; ++i) {
    std::unique_ptr<PendingAppend>& p = batch[i];
    Status& st = results[i];
    if (st.ok()) {
      appends++;
      p->done(Address(entries[i].address()));
      continue;
    }
    // Lost the token (a hole at the head) or wrote in a sealed epoch: the
    // entry is not acknowledged; take a new token.
    const bool lost = st.code() == Code::kAlreadyWritten;
    const bool epoch = internal::IsEpochError(st);
    if (!lost && !epoch) {
      p->done(std::move(st));
      continue;
    }
    if (epoch && !refreshed) {
      refreshed = true;
      if (!RefreshLayout(layout->epoch())) SleepNanos(10'000'000);
    }
    if (epoch) {
      // The entry may already be decided at its address (it reached the
      // head before the seal): then it is finished there, never written a
      // second time under a new token.
      auto done_here = CompleteInNewEpoch(entries[i], p->deadline_nanos);
      if (!done_here.ok()) {
        p->done(done_here.status());
        continue;
      }
      if (done_here->has_value()) {
        appends++;
        p->done(**done_here);
        continue;
      }
    }
    p->attempts++;
    if (p->attempts >= options.max_append_attempts || NowNanos() >= p->deadline_nanos) {
      // An epoch error at the deadline is transient for the caller (the
      // client follows epochs itself): Unavailable, as documented.
      p->done(Status(lost ? st.code() : Code::kUnavailable,
                     "append gave up after " + std::to_string(p->attempts) +
                         " tokens; last: " + st.message() +
                         (lost ? "; readers fill holes faster than this writer "
                                 "writes: raise hole_fill_timeout or retry"
                               : "; no newer epoch took it before retry_deadline: retry "
                                 "after the reconfiguration")));
      continue;
    }
    // Get the payload back for the next attempt.
    p->payload = std::move(*entries[i].mutable_payload());
    Enqueue(std::move(p), /*front=*/true);
  }
}

Result<std::optional<Address>> Client::Impl::CompleteInNewEpoch(const proto::LogEntry& entry,
                                                                int64_t deadline_nanos) {
  // A unit sealed at a later epoch before that epoch's layout is agreed
  // (a reconfiguration seals first, then proposes): wait for the layout,
  // since only it says whether this entry survives at its address.
  internal::Backoff backoff(random, 100'000'000);
  while (CurrentLayout()->epoch().value() <= entry.epoch()) {
    if (RefreshLayout(Epoch(entry.epoch()))) break;
    const int64_t pause = backoff.NextNanos();
    if (NowNanos() + pause >= deadline_nanos) {
      return Unavailable("address " + std::to_string(entry.address()) + ": its epoch " +
                         std::to_string(entry.epoch()) +
                         " was sealed but no newer layout became known before the retry "
                         "deadline; the append may or may not be in the log");
    }
    SleepNanos(pause);
  }
  const Address address(entry.address());
  const std::string where = "address " + std::to_string(address.value()) + " (epoch " +
                            std::to_string(entry.epoch()) + ", sealed)";
  while (true) {
    std::shared_ptr<const Layout> now = CurrentLayout();
    const Chain& chain = now->ChainFor(address);
    RpcReplicaIo io(this, *now, DeadlineFromNow());
    auto head = io.Read(chain.front(), address);
    Status failed;
    if (!head.ok() && head.status().code() != Code::kUnwritten) {
      // The head cannot say (down, unreachable, sealed at a newer epoch):
      // it may hold this entry, so a new token could put the payload in
      // the log twice.
      failed = head.status().WithContext(where + ": the new chain head " + chain.front() +
                                         " cannot say whether it holds this append");
    } else if (!head.ok() || !internal::SameEntry(*head, entry)) {
      // Not ours at the new head (unwritten, a hole, another entry): our
      // copy, if any, is on a unit the new epoch left out, so it is
      // invisible; a new token is safe.
      return std::optional<Address>();
    } else if (chain.size() > 1) {
      failed = internal::CompleteChain(io, chain, 1, entry);
      if (!failed.ok()) {
        failed = failed.WithContext(where +
                                    " holds this append at its chain head, but "
                                    "completing its chain failed");
      }
    }
    if (failed.ok()) return std::optional<Address>(address);
    if (internal::IsEpochError(failed) && RefreshLayout(now->epoch())) continue;
    if (!internal::IsEpochError(failed) && !internal::IsTransient(failed)) return failed;
    const int64_t pause = backoff.NextNanos();
    if (NowNanos() + pause >= deadline_nanos) {
      return Unavailable(failed.message() +
                         "; gave up at the retry deadline: the append may or may not be in the "
                         "log (do not append it again blindly)");
    }
    SleepNanos(pause);
  }
}

void Client::AppendAsync(std::string payload, std::vector<StreamId> streams, AppendCallback done) {
  if (streams.size() > sequencer::kMaxStreamsPerRequest) {
    done(InvalidArgument("append names " + std::to_string(streams.size()) + " streams; at most " +
                         std::to_string(sequencer::kMaxStreamsPerRequest) + " per entry"));
    return;
  }
  auto p = std::make_unique<PendingAppend>();
  p->key = streams;
  std::sort(p->key.begin(), p->key.end());
  if (std::adjacent_find(p->key.begin(), p->key.end()) != p->key.end()) {
    done(InvalidArgument("append names a stream twice; list each stream once"));
    return;
  }
  p->payload = std::move(payload);
  p->streams = std::move(streams);
  p->done = std::move(done);
  p->deadline_nanos = impl_->DeadlineFromNow();
  impl_->Enqueue(std::move(p), /*front=*/false);
}

Result<Address> Client::Append(std::string payload, std::vector<StreamId> streams) {
  return WaitForValue<Result<Address>>(
      *impl_->threads, [&](std::function<void(Result<Address>)> done) {
        AppendAsync(std::move(payload), std::move(streams), std::move(done));
      });
}

}  // namespace tally::client
