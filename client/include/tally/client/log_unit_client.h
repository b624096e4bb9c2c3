#pragma once

// A blocking client for one log unit's log.* RPCs. For tools, tests and
// administration; the replication runtime issues the same RPCs
// asynchronously. Thread-safe (calls may run concurrently); each call blocks
// its caller until the answer or the timeout.

#include <chrono>
#include <memory>
#include <vector>

#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/base/threads.h"
#include "tally/net/transport.h"
#include "tally/proto/logunit.pb.h"

namespace tally::client {

class LogUnitClient {
 public:
  // `channel` is shared; requests carry `epoch`. Calls block through
  // `threads` (nullptr: SystemThreads(); a simulation passes its own).
  LogUnitClient(std::shared_ptr<net::Channel> channel, Epoch epoch,
                std::chrono::milliseconds timeout = std::chrono::milliseconds(5000),
                Threads* threads = nullptr);

  void set_epoch(Epoch epoch) { epoch_ = epoch; }
  Epoch epoch() const { return epoch_; }

  // Writes one DATA entry at entry.address. Errors: AlreadyWritten,
  // WrongEpoch (with current_epoch), Trimmed, TooLarge, transport errors.
  Status Write(proto::LogEntry entry);

  // Writes many entries; the outer Result fails only when the whole call
  // does (transport, epoch); per-entry outcomes are in the vector.
  Result<std::vector<Status>> WriteBatch(const std::vector<proto::LogEntry>& entries);

  // Reads one address: the entry (type HOLE for a hole), or Unwritten,
  // Trimmed, Corruption, WrongEpoch, transport errors.
  Result<proto::LogEntry> Read(Address address);

  // Entries held in [from, to), ascending, at most max_entries (0: server limit).
  Result<proto::ReadRangeResponse> ReadRange(Address from, Address to, uint32_t max_entries = 0);

  // Fills `address` with a hole. AlreadyWritten if it holds something.
  Status FillHole(Address address);

  Result<proto::SealResponse> Seal(Epoch epoch);
  // Wipes every entry the unit holds and seals it at this client's epoch
  // (log.reset; docs/log-unit.md), answering the sealed epoch and what was
  // dropped. Only for a unit that is in no chain of the layout of that
  // epoch: the unit cannot check it, and wiping a chain member loses
  // acknowledged entries. Errors: WrongEpoch (the unit is sealed above our
  // epoch), IoError (the wipe failed; retrying it finishes it), transport
  // errors (the reset may or may not have run; repeating it is safe as long
  // as nothing was written to the unit since).
  Result<proto::ResetResponse> Reset();
  Result<proto::TailResponse> Tail();
  // What the unit holds and its group commits' latency (log.stats; not
  // fenced). CommitHistogram::From reads the histogram out of it.
  Result<proto::StatsResponse> Stats();
  // Returns the trim mark after the call.
  Result<uint64_t> Trim(Address address);
  Result<std::vector<Address>> StreamAddresses(const StreamId& stream, Address from, Address to);

 private:
  template <typename Resp, typename Req>
  Result<Resp> Call(const char* method, const Req& req);

  std::shared_ptr<net::Channel> channel_;
  Epoch epoch_;
  std::chrono::milliseconds timeout_;
  Threads* threads_;
};

}  // namespace tally::client
