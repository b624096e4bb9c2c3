#pragma once

// Client-driven chain replication as plain code over a ReplicaIo seam: the
// protocol (write head to tail, read the tail, complete half-written chains,
// fill holes, settle the writer/reader races) without sockets, so a unit
// test can drive it with a fake. Private to client/. Protocol:
// docs/protocol.md.

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/base/status.h"
#include "tally/client/layout.h"
#include "tally/proto/log_entry.pb.h"

namespace tally::client::internal {

// The I/O the chain protocol needs, bound to one epoch. Implementations
// retry transient errors themselves (until their deadline) and return the
// final error; WRONG_EPOCH/SEALED come back as they are.
class ReplicaIo {
 public:
  virtual ~ReplicaIo() = default;
  // log.write_batch: per-entry results, or the error of the whole call.
  virtual Result<std::vector<Status>> WriteBatch(const std::string& unit,
                                                 const std::vector<proto::LogEntry>& entries) = 0;
  // The fast path of a chain write: log.write_batch of `entries` to each of
  // `units` in order, each sent once the unit before took every entry.
  // Returns how many units took every entry; when fewer than units.size(),
  // `*stopped` holds the next unit's answer (the call's error, or per-entry
  // results with a failure among them). An implementation need not retry
  // transient errors here (WriteChain retries them through WriteBatch).
  // This one sends one WriteBatch at a time; the RPC implementation sends
  // each next call from the network thread that received the answer.
  virtual size_t WriteBatchDown(const std::vector<std::string>& units,
                                const std::vector<proto::LogEntry>& entries,
                                Result<std::vector<Status>>* stopped);
  virtual Status Write(const std::string& unit, const proto::LogEntry& entry) = 0;
  virtual Result<proto::LogEntry> Read(const std::string& unit, Address address) = 0;
  virtual Status FillHole(const std::string& unit, Address address) = 0;
  // The sequencer's global tail (seq.tail): every address below was issued.
  virtual Result<Address> GlobalTail() = 0;
  // The epoch every request of this I/O carries.
  virtual Epoch epoch() = 0;
  virtual int64_t NowNanos() = 0;
  virtual void SleepNanos(int64_t nanos) = 0;
};

// What the protocol did, for ClientStats. Thread-safe.
struct ChainCounters {
  std::atomic<uint64_t> holes_filled{0};
  std::atomic<uint64_t> chains_completed{0};
  std::atomic<uint64_t> lost_races{0};
};

// True when every result is OK.
bool AllOk(const std::vector<Status>& results);

// True when `a` and `b` are the same write (address, type, streams, payload,
// metadata); the epoch is ignored because each log unit stamps its own.
bool SameEntry(const proto::LogEntry& a, const proto::LogEntry& b);

// Writes `entries` (all mapped to `chain`) to every unit, head to tail, with
// one log.write_batch per unit. Returns one status per entry: OK once the
// tail holds it; AlreadyWritten when the head holds something else there (a
// reader filled a hole: the caller retries with a new token); Internal when
// a later unit holds something else (an invariant broke); else the unit's
// error (e.g. WRONG_EPOCH, or a transient error after its retries).
// An ALREADY_WRITTEN answer is settled by reading the entry back: if it is
// ours (a retried write of our own), the write carries on down the chain.
std::vector<Status> WriteChain(ReplicaIo& io, const Chain& chain,
                               const std::vector<proto::LogEntry>& entries,
                               ChainCounters* counters);

struct ReadOptions {
  // How long a reader waits on an issued but unwritten address before it
  // fills a hole there.
  int64_t hole_fill_timeout_nanos = 200'000'000;
  // First pause between polls of the head (doubles up to 50 ms).
  int64_t first_poll_nanos = 1'000'000;
};

// Reads `address` from the chain's tail. If the tail has nothing: an address
// at or above the global tail is Unwritten at once; else the head is read
// and, if it holds the entry (or a hole), the chain is completed and the
// entry served; if the head stays unwritten for hole_fill_timeout, a hole is
// filled head to tail (or, if a writer wins at the head, its entry is
// completed) and served. Errors: Unwritten (above the tail), Trimmed,
// Corruption, Internal (replicas disagree), WRONG_EPOCH, transport errors.
Result<proto::LogEntry> ReadChain(ReplicaIo& io, const Chain& chain, Address address,
                                  const ReadOptions& options, ChainCounters* counters);

// Writes `entry` (data or hole, as read from unit `from - 1`) to units
// [from, end) of the chain in order. ALREADY_WRITTEN with the same entry is
// fine; with another one it is Internal.
Status CompleteChain(ReplicaIo& io, const Chain& chain, size_t from, const proto::LogEntry& entry);

}  // namespace tally::client::internal
