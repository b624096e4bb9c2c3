#include "chain.h"

#include <algorithm>
#include <optional>

#include "rpc.h"

namespace tally::client::internal {

namespace {

// How long a write another client has in progress may take to become
// readable (the unit answers ALREADY_WRITTEN "write in progress" and
// UNWRITTEN to reads until its group commit is durable).
constexpr int64_t kSettleNanos = 2'000'000'000;
constexpr int64_t kMaxPollNanos = 50'000'000;
// Rounds of per-entry transient errors (e.g. OVERLOADED) retried on a unit.
constexpr int kEntryRetryRounds = 10;

std::string AddressText(uint64_t a) { return "address " + std::to_string(a); }

// Reads `address` from `unit`, waiting while it reports UNWRITTEN (a write
// in progress there) for at most `wait_nanos`.
Result<proto::LogEntry> ReadSettled(ReplicaIo& io, const std::string& unit, Address address,
                                    int64_t wait_nanos) {
  const int64_t deadline = io.NowNanos() + wait_nanos;
  int64_t poll = 1'000'000;
  while (true) {
    auto r = io.Read(unit, address);
    if (r.ok() || r.status().code() != Code::kUnwritten) return r;
    const int64_t now = io.NowNanos();
    if (now >= deadline) {
      return Unavailable(AddressText(address.value()) + " on " + unit +
                         " answered ALREADY_WRITTEN but stays unreadable (a write in progress "
                         "did not become durable); retry later");
    }
    io.SleepNanos(std::min(poll, deadline - now));
    poll = std::min(poll * 2, kMaxPollNanos);
  }
}

proto::LogEntry HoleEntry(Address address, Epoch epoch) {
  proto::LogEntry e;
  e.set_address(address.value());
  e.set_epoch(epoch.value());
  e.set_type(proto::HOLE);
  return e;
}

}  // namespace

bool AllOk(const std::vector<Status>& results) {
  return std::all_of(results.begin(), results.end(), [](const Status& st) { return st.ok(); });
}

size_t ReplicaIo::WriteBatchDown(const std::vector<std::string>& units,
                                 const std::vector<proto::LogEntry>& entries,
                                 Result<std::vector<Status>>* stopped) {
  for (size_t i = 0; i < units.size(); ++i) {
    auto r = WriteBatch(units[i], entries);
    if (!r.ok() || !AllOk(*r)) {
      *stopped = std::move(r);
      return i;
    }
  }
  return units.size();
}

bool SameEntry(const proto::LogEntry& a, const proto::LogEntry& b) {
  if (a.address() != b.address() || a.type() != b.type() || a.payload() != b.payload() ||
      a.streams_size() != b.streams_size()) {
    return false;
  }
  for (int i = 0; i < a.streams_size(); ++i) {
    if (a.streams(i).hi() != b.streams(i).hi() || a.streams(i).lo() != b.streams(i).lo()) {
      return false;
    }
  }
  return a.metadata().principal() == b.metadata().principal() &&
         a.metadata().wall_time_nanos() == b.metadata().wall_time_nanos();
}

std::vector<Status> WriteChain(ReplicaIo& io, const Chain& chain,
                               const std::vector<proto::LogEntry>& entries,
                               ChainCounters* counters) {
  std::vector<Status> out(entries.size());
  // The usual case: every unit takes every entry.
  Result<std::vector<Status>> stopped = Internal("no answer");
  const size_t clean = entries.empty() ? chain.size() : io.WriteBatchDown(chain, entries, &stopped);
  if (clean == chain.size()) return out;
  // The unit that did not take them all: its answer counts as its first
  // round below, unless it is a transient failure of the whole call, which
  // WriteBatch retries.
  std::optional<Result<std::vector<Status>>> first;
  if (stopped.ok() || !IsTransient(stopped.status())) first = std::move(stopped);

  std::vector<size_t> live(entries.size());
  for (size_t i = 0; i < live.size(); ++i) live[i] = i;
  for (size_t pos = clean; pos < chain.size() && !live.empty(); ++pos) {
    const std::string& unit = chain[pos];
    std::vector<size_t> next_live;
    std::vector<size_t> to_send = std::move(live);
    for (int round = 0; !to_send.empty(); ++round) {
      // `to_send` is ascending; when it holds every entry (the usual case:
      // all succeeded so far), send `entries` itself rather than a copy.
      std::vector<proto::LogEntry> subset;
      if (to_send.size() != entries.size()) {
        subset.reserve(to_send.size());
        for (size_t idx : to_send) subset.push_back(entries[idx]);
      }
      const std::vector<proto::LogEntry>& batch =
          to_send.size() == entries.size() ? entries : subset;
      Result<std::vector<Status>> results = Internal("no answer");
      if (first.has_value()) {
        results = std::move(*first);  // every entry was sent to this unit
        first.reset();
      } else {
        results = io.WriteBatch(unit, batch);
      }
      if (!results.ok()) {
        for (size_t idx : to_send) {
          out[idx] = results.status().WithContext("writing " + AddressText(entries[idx].address()));
        }
        break;
      }
      std::vector<size_t> again;
      for (size_t k = 0; k < to_send.size(); ++k) {
        const size_t idx = to_send[k];
        const proto::LogEntry& entry = entries[idx];
        const Status& st = (*results)[k];
        if (st.ok()) {
          next_live.push_back(idx);
          continue;
        }
        if (IsTransient(st) && round + 1 < kEntryRetryRounds) {
          again.push_back(idx);
          continue;
        }
        if (st.code() != Code::kAlreadyWritten) {
          out[idx] = st.WithContext("writing " + AddressText(entry.address()) + " to " + unit);
          continue;
        }
        // Taken: ours (a retry of our own write) or someone else's.
        auto there = ReadSettled(io, unit, Address(entry.address()), kSettleNanos);
        if (!there.ok()) {
          out[idx] = there.status();
        } else if (SameEntry(*there, entry)) {
          next_live.push_back(idx);
        } else if (pos == 0) {
          if (counters != nullptr) counters->lost_races++;
          out[idx] = AlreadyWritten(
              AddressText(entry.address()) + " already holds " +
              (there->type() == proto::HOLE ? "a hole (filled by a reader)" : "another entry") +
              " at chain head " + unit + "; retry with a new token");
        } else {
          out[idx] = Internal(AddressText(entry.address()) + ": chain unit " + unit +
                              " (position " + std::to_string(pos) +
                              ") holds a different entry than the chain head; replicas "
                              "disagree (invariant broken)");
        }
      }
      to_send = std::move(again);
      if (!to_send.empty()) io.SleepNanos(int64_t{1'000'000} << std::min(round, 5));
    }
    live = std::move(next_live);
  }
  return out;
}

Status CompleteChain(ReplicaIo& io, const Chain& chain, size_t from, const proto::LogEntry& entry) {
  const Address address(entry.address());
  for (size_t pos = from; pos < chain.size(); ++pos) {
    const std::string& unit = chain[pos];
    Status st = entry.type() == proto::HOLE ? io.FillHole(unit, address) : io.Write(unit, entry);
    if (st.ok()) continue;
    if (st.code() != Code::kAlreadyWritten) {
      return st.WithContext("completing the chain of " + AddressText(address.value()) + " on " +
                            unit);
    }
    auto there = ReadSettled(io, unit, address, kSettleNanos);
    if (!there.ok()) return there.status();
    if (!SameEntry(*there, entry)) {
      return Internal(AddressText(address.value()) + ": chain unit " + unit + " (position " +
                      std::to_string(pos) +
                      ") holds a different entry than the units before it; replicas disagree "
                      "(invariant broken)");
    }
  }
  return Status::OK();
}

Result<proto::LogEntry> ReadChain(ReplicaIo& io, const Chain& chain, Address address,
                                  const ReadOptions& options, ChainCounters* counters) {
  const std::string& head = chain.front();
  const std::string& tail = chain.back();
  auto at_tail = io.Read(tail, address);
  if (at_tail.ok() || at_tail.status().code() != Code::kUnwritten) return at_tail;

  TALLY_ASSIGN_OR_RETURN(Address global_tail, io.GlobalTail());
  if (address >= global_tail) {
    return Unwritten(AddressText(address.value()) + " is at or above the global tail " +
                     std::to_string(global_tail.value()) +
                     ": no token was issued there yet; read below the tail");
  }

  // Issued but not on the tail: a writer is on its way down the chain, or
  // stalled, or crashed. Wait for it at the head, then take over.
  auto complete = [&](proto::LogEntry entry) -> Result<proto::LogEntry> {
    if (chain.size() > 1) {
      TALLY_RETURN_IF_ERROR(CompleteChain(io, chain, 1, entry));
      if (counters != nullptr) counters->chains_completed++;
    }
    return entry;
  };
  const int64_t deadline = io.NowNanos() + options.hole_fill_timeout_nanos;
  int64_t poll = options.first_poll_nanos;
  while (true) {
    auto at_head = io.Read(head, address);
    if (at_head.ok()) return complete(std::move(*at_head));
    if (at_head.status().code() != Code::kUnwritten) return at_head;
    const int64_t now = io.NowNanos();
    if (now >= deadline) break;
    io.SleepNanos(std::min(poll, deadline - now));
    poll = std::min(poll * 2, kMaxPollNanos);
  }

  Status filled = io.FillHole(head, address);
  if (filled.ok()) {
    if (counters != nullptr) counters->holes_filled++;
    return complete(HoleEntry(address, io.epoch()));
  }
  if (filled.code() != Code::kAlreadyWritten) {
    return filled.WithContext("filling a hole at " + AddressText(address.value()) + " on " + head);
  }
  // A writer (or another reader) won the head: serve what it wrote.
  TALLY_ASSIGN_OR_RETURN(proto::LogEntry entry, ReadSettled(io, head, address, kSettleNanos));
  return complete(std::move(entry));
}

}  // namespace tally::client::internal
