#pragma once

// The durable, write-once address space of one log unit.
//
// Records are appended to segment files (docs/log-format.md) by one writer
// thread that batches every pending append into one write and fdatasync
// (group commit, File::Write with sync); an append is acknowledged only
// after that sync. With inline_writes the caller's thread does the same group
// commit for its own Append (for the single-threaded simulation). Reads are served by address from
// an in-memory index. Metadata (sealed epoch, trim mark, per-segment address and stream indexes of
// closed segments) lives in RocksDB, so start-up reads the index of closed segments from RocksDB
// and scans only the segment that was open.

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tally/base/env.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/log/record.h"

namespace rocksdb {
class Env;
}

namespace tally::log {

struct SegmentStoreOptions {
  std::string dir;                            // segment files and metadata/ live here
  uint64_t segment_bytes = 64ull << 20;       // roll to a new segment past this size
  uint32_t max_record_bytes = 16u << 20;      // larger payloads are refused (TooLarge)
  uint64_t max_batch_bytes = 8ull << 20;      // bytes per group commit at most
  uint64_t max_pending_bytes = 256ull << 20;  // queued but unsynced; beyond: Overloaded
  // Env for segment files. Not owned. Defaults to DefaultEnv().
  Env env{};
  // RocksDB env for the metadata store (e.g. an in-memory one in tests).
  // Not owned; nullptr means rocksdb::Env::Default().
  rocksdb::Env* metadata_env = nullptr;
  // True: no writer thread. Append writes its own records (one File::Write
  // with sync=true) and runs `done` on the calling thread before returning.
  // Concurrent Appends are serialized (each is its own group, so throughput
  // is far below the threaded path). Same write-once, trim, epoch and
  // recovery semantics; the files are identical in format.
  bool inline_writes = false;
  // Zero-ahead: the indexer thread keeps up to this many bytes past the
  // open segment's end written with zeros and synced, so that a group
  // commit overwrites blocks that are already allocated inside the file's
  // size and its fdatasync flushes data without an ext4 journal commit
  // (docs/log-format.md, "Zero-ahead"). Zeros start 1 MiB past the end, so
  // values up to 1 MiB write none; 0 turns it off; so does inline_writes. Recovery reads an
  // all-zero remainder of a segment as its clean end, not as a torn tail.
  uint64_t zero_ahead_bytes = 8ull << 20;
  // The open segment's index is stored in parts of this many entries as it
  // fills (~40 KB each for 64-byte appends), so that a roll stores only the
  // last part and a closing record (docs/log-format.md, "Metadata"). 0 or 1:
  // a part per group commit.
  uint32_t index_part_entries = 8192;
};

// What recovery found on open (for logs and tests).
struct RecoveryReport {
  uint64_t segments = 0;
  uint64_t records = 0;
  uint64_t scanned_records = 0;     // records read from segment files at start-up
  uint64_t torn_bytes_dropped = 0;  // torn tail truncated away
  uint64_t zero_tail_bytes = 0;     // zeros written ahead past the last record (not torn)
  uint64_t corrupt_records = 0;     // failed checksum; never served
};

// How long the store's group commits took: each one's write + fdatasync,
// the disk's share of an append's latency on this unit (etcd's
// wal_fsync_duration). Counted since the store opened, into fixed buckets.
struct CommitLatency {
  // Upper bounds (inclusive, microseconds) of the buckets; the last one
  // takes everything slower.
  static constexpr std::array<uint64_t, 21> kBucketLeUs = {
      100,  200,   300,   400,   500,    750,    1000,   1500,    2000,    3000,      5000,
      7500, 10000, 20000, 50000, 100000, 250000, 500000, 1000000, 2500000, UINT64_MAX};

  uint64_t commits = 0;
  uint64_t records = 0;  // records those commits made durable
  uint64_t bytes = 0;    // bytes they wrote
  uint64_t sum_us = 0;
  uint64_t max_us = 0;
  std::array<uint64_t, kBucketLeUs.size()> buckets{};  // commits per bucket

  void Add(uint64_t micros, uint64_t records, uint64_t bytes);
};

struct StoreStats {
  uint64_t entries = 0;
  uint64_t local_tail = 0;  // highest address + 1, or 0
  uint64_t trim_mark = 0;
  uint64_t segments = 0;
  uint64_t bytes = 0;
  CommitLatency commit;
  uint64_t uptime_ms = 0;  // since the store opened: `commit`'s window
};

using AppendCallback = std::function<void(std::vector<Status> per_record)>;

class SegmentStore {
 public:
  // Opens (creating if needed) the store in options.dir and recovers it:
  // loads closed-segment indexes from RocksDB, scans the open segment,
  // truncates a torn tail, and marks records whose checksum fails as
  // corrupt. Errors: IoError, Corruption (metadata unreadable).
  static Result<std::unique_ptr<SegmentStore>> Open(SegmentStoreOptions options,
                                                    RecoveryReport* report = nullptr);

  // Waits for pending appends to sync, then closes.
  virtual ~SegmentStore() = default;

  // Appends records asynchronously. `done` runs once, on the writer thread
  // (with inline_writes: on the calling thread, before Append returns),
  // after the batch is durable, with one status per record: OK, or
  // AlreadyWritten (the address holds a record or a pending one), Trimmed
  // (below the trim mark), TooLarge, Overloaded, or IoError (the sync failed:
  // the record is not acknowledged and the store refuses further writes).
  // Write-once is decided at submission: of two appends of one address, the
  // first submitted wins. Thread-safe.
  virtual void Append(std::vector<Record> records, AppendCallback done) = 0;

  // Synchronous convenience over Append.
  Status AppendSync(Record record);

  // Reads a durable record. Errors: Unwritten (never written, or not yet
  // durable), Trimmed, Corruption (checksum failed; never served), IoError.
  // Thread-safe.
  virtual Result<Record> Read(Address address) = 0;

  // Addresses in [from, to) that hold durable records, ascending, at most `limit`.
  virtual std::vector<Address> ListAddresses(Address from, Address to, size_t limit) = 0;

  // Durable addresses of `stream` in [from, to), ascending.
  virtual std::vector<Address> StreamAddresses(const StreamId& stream, Address from,
                                               Address to) = 0;

  // Every stream with at least one durable address at or above the trim
  // mark, in no particular order (pair with StreamAddresses for the maps).
  // Thread-safe; costs time linear in the number of streams.
  virtual std::vector<StreamId> Streams() = 0;

  // Durably records the sealed epoch (RocksDB, synced). Epochs never go
  // down: sealing at or below the current one returns the current one.
  virtual Result<Epoch> SetSealedEpoch(Epoch epoch) = 0;
  virtual Epoch sealed_epoch() const = 0;

  // Waits until every append submitted before this call has completed.
  // With inline_writes: until they are durable and published (their `done`
  // may still be running on the threads that called Append).
  virtual void Flush() = 0;

  // Prefix trim: addresses below `mark` answer Trimmed from now on; segment
  // files whose records are all below it are deleted. The mark is durable
  // before this returns. A mark at or below the current one is a no-op.
  virtual Status Trim(Address mark) = 0;

  virtual StoreStats Stats() = 0;

  // Deletes everything this store holds about entries: every segment file,
  // the stored indexes of closed segments and the trim mark (back to 0);
  // the in-memory index and stream maps are cleared. Afterwards the store
  // is empty and accepts writes at any address again (write-once starts
  // over). The sealed epoch is kept, raised to `epoch` if below it.
  //
  // Appends submitted before the call complete first (and are wiped);
  // appends submitted while it runs are refused with Unavailable. Reads
  // racing it may still see old entries until the index is cleared.
  //
  // Crash-safe: a "wipe in progress" marker is made durable (RocksDB,
  // synced, together with the raised epoch) before anything is deleted and
  // cleared, atomically with the metadata, only after the file deletions
  // are durable; Open finishes an interrupted wipe before recovery. So after
  // a crash at any point the store reopens either as it was or empty.
  //
  // Returns the stats of the emptied store. Errors: IoError naming what
  // failed. If the marker could not be written nothing was deleted, but the
  // marker may still have reached the disk, so the store refuses writes
  // until it is reopened (which then finishes the wipe, or keeps the store
  // if the marker is not there). If a later step failed, the store is
  // already empty in memory and refuses writes until it is reopened (which
  // finishes the wipe) or wiped again. Thread-safe; blocks on disk and
  // RocksDB.
  virtual Result<StoreStats> Wipe(Epoch epoch) = 0;
};

}  // namespace tally::log
