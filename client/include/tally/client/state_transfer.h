#pragma once

// State transfer: copying a chain's entries to a log unit that joins it
// (healing, docs/layout.md "Bringing a node back"). The copy never
// overwrites: an address the target already holds must hold the same entry
// as the source, or the copy stops (the target must be wiped first).

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/base/threads.h"
#include "tally/net/transport.h"

namespace tally::client {

struct TransferStats {
  uint64_t entries = 0;    // entries written to the target (data and holes)
  uint64_t holes = 0;      // of which holes
  uint64_t bytes = 0;      // payload bytes written to the target
  uint64_t skipped = 0;    // addresses the target already held, identical
  uint64_t trim_mark = 0;  // the source's trim mark (nothing below it is copied)
  uint64_t next = 0;       // the copy covered [from, next)
  // The lowest address of the copied stripe in [from, next), at or above
  // the source's trim mark, that the source did not hold when it was read
  // (UINT64_MAX: none). A write in flight then lands later, so a copy that
  // must be complete resumes from here, not from `next`.
  uint64_t first_absent = UINT64_MAX;
};

// Called after every chunk (once its writes are acknowledged, in address
// order) with the totals so far, on the thread that called CopyRange, never
// concurrently with itself.
using ProgressFn = std::function<void(const TransferStats&)>;

struct CopyOptions {
  // Entries per log.read_range; halved (down to 1) when an answer is too large.
  uint32_t chunk_entries = 256;
  std::chrono::milliseconds rpc_timeout{5000};
  // Transient errors (timeouts, an overloaded unit) are retried this often.
  int retries = 5;
  // Copy only the addresses of one stripe (a % stripes == stripe): a unit in
  // several chains holds the addresses of all of them.
  uint32_t stripes = 1;
  uint32_t stripe = 0;
  // log.write_batch calls to the target in flight at once (at least 1): the
  // next chunk is read from the source while earlier ones are written.
  uint32_t writes_in_flight = 2;
  // The blocking seam (waits and retry pauses); nullptr: SystemThreads().
  Threads* threads = nullptr;
};

// Copies every entry `from_unit` holds in [from, to) that `to_unit` lacks,
// with requests of `epoch` to both: data by log.write_batch, holes by
// log.fill_hole (write_batch refuses holes). Addresses below the source's
// trim mark are skipped, and the target is trimmed to that mark so it
// answers TRIMMED there too. Reads of the source overlap the writes to the
// target. The target must be in no chain while it is copied to: at and
// above its local tail as read at the start, it is not read back (an entry
// found there anyway is caught by write-once: ALREADY_WRITTEN, then
// compared). Blocks (must not run on a transport thread); on an error it
// returns once no write of its own is in flight. Errors: FailedPrecondition
// (divergent data, wipe the node before it rejoins: the target holds a
// different entry at some address, or an entry of the stripe in [from, to)
// above the source's trim mark where the source holds nothing), WrongEpoch /
// Sealed (a unit is sealed above `epoch`), transport errors.
Result<TransferStats> CopyRange(net::Transport& transport, const std::string& from_unit,
                                const std::string& to_unit, Address from, Address to,
                                uint64_t epoch, ProgressFn progress = nullptr,
                                const CopyOptions& options = {});

}  // namespace tally::client
