#pragma once

// Private: the SegmentStore implementation. Responsibilities are split by
// file: segment_store.cc (open, submission, reads, seal, trim),
// segment_writer.cc (group commit, rolling, publishing: on the writer thread,
// or on the caller's thread with inline_writes),
// segment_recovery.cc (loading indexes and scanning segments at open) and
// segment_wipe.cc (Wipe, and finishing an interrupted one at open).
//
// Locking: mu_ guards the address index, the segment table, the queue and
// the trim mark; bitmap_mu_ guards the address and stream bitmaps; the open
// segment's own index (open_index_) and the serialization buffer belong to
// the writer thread (with inline_writes: to whoever holds inline_mu_);
// rolled_mu_ guards what the writer hands the indexer thread (index parts,
// rolled segments) and the zero-ahead state.
// Lock order: inline_mu_ -> trim_mu_ -> seal_mu_ -> mu_ -> bitmap_mu_ (only
// Wipe holds the first three together).

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <roaring/roaring64map.hh>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "address_index.h"
#include "metadata_store.h"
#include "tally/log/segment_store.h"

namespace tally::log {

// One segment file.
struct Segment {
  uint32_t id = 0;
  std::string path;
  std::unique_ptr<File> file;
  uint64_t size = 0;  // bytes durable in the file
  uint64_t min_address = IndexEntry::kEmpty;
  uint64_t max_address = 0;  // valid when min_address != kEmpty
  bool closed = false;       // index stored; never written again; trimmable  GUARDED_BY(mu_)
  // With zero-ahead, while the segment is open: a second handle on the
  // same file for the indexer thread's zero writes, so that they never
  // wait for (or hold up) the writer's io_uring ring. Dropped when the
  // rolled segment is closed. Indexer thread only (Recover before Start).
  std::unique_ptr<File> zero_file;

  void Cover(uint64_t address) {
    if (min_address == IndexEntry::kEmpty || address < min_address) min_address = address;
    if (address > max_address) max_address = address;
  }
};

// What publishing needs of one written record, gathered while the record
// is in cache during serialization (the group's Records are cold by then).
struct WrittenRecord {
  uint64_t address;
  uint32_t length;
  uint32_t nstreams;
  const StreamId* streams;
};

// One Append call between submission and completion.
struct PendingAppend {
  std::vector<Record> records;
  std::vector<Status> statuses;  // OK for records accepted for writing
  AppendCallback done;
  uint64_t bytes = 0;  // encoded bytes of the accepted records
  uint64_t seq = 0;
};

std::string SegmentFileName(uint32_t id);
// Parses "seg-<20 digits>.log" into its id; false for any other name.
bool ParseSegmentFileName(const std::string& name, uint64_t* id);

class SegmentStoreImpl final : public SegmentStore {
 public:
  SegmentStoreImpl(SegmentStoreOptions options, std::unique_ptr<MetadataStore> meta);
  ~SegmentStoreImpl() override;

  // segment_recovery.cc. Called once by Open before Start.
  Status Recover(RecoveryReport* report);
  // Readies the open segment and starts the writer thread (none with
  // inline_writes).
  void Start();

  void Append(std::vector<Record> records, AppendCallback done) override;
  Result<Record> Read(Address address) override;
  std::vector<Address> ListAddresses(Address from, Address to, size_t limit) override;
  std::vector<Address> StreamAddresses(const StreamId& stream, Address from, Address to) override;
  std::vector<StreamId> Streams() override;
  Result<Epoch> SetSealedEpoch(Epoch epoch) override;
  Epoch sealed_epoch() const override { return Epoch(sealed_epoch_.load()); }
  void Flush() override;
  Status Trim(Address mark) override;
  StoreStats Stats() override;
  Result<StoreStats> Wipe(Epoch epoch) override;

 private:
  // segment_store.cc
  Status CheckRecord(const Record& r) const;  // size and shape, no lock needed
  // Decides write-once, trim and back-pressure for each record of `p` whose
  // status is still OK, reserves the accepted addresses as pending and
  // numbers `p`. Requires mu_ held.
  void AdmitLocked(PendingAppend& p);
  // Append with inline_writes: admit, commit and complete on this thread.
  void AppendInline(PendingAppend p);
  // Deletes closed segments whose records all lie below `mark`, their
  // stored indexes, and bitmap bits below it. Caller holds trim_mu_ (or is
  // Recover).
  Status DropBelow(uint64_t mark);

  // segment_writer.cc
  void WriterLoop();
  bool TakeGroup();
  // Writes and publishes group_ (or fails it); shared by both modes.
  void CommitGroup();
  Status WriteGroup(uint64_t* base_offset, uint64_t* total);
  void PublishGroup(uint64_t base_offset, uint64_t total);
  void FailGroup(const Status& error);
  void CompleteGroup();
  Status RollSegment();
  // Hands open_index_'s part to be stored (when it has index_part_entries):
  // to the indexer thread, or stores it here with inline_writes.
  void MaybeStoreIndexPart();
  // Stores one part of a segment's index (indexer thread; with
  // inline_writes and in Recover, the caller). A failure is logged: that
  // segment is scanned at the next start.
  void StoreIndexPart(SegmentIndexPart part);
  // Indexer thread, when it has nothing else to do: faults in the next
  // slice of index_chunk_, and hands the chunk to index_ once all of it is.
  // A slice every kIndexChunkPause: a 2 MiB chunk in ~32 slices over
  // ~40 ms, against ~650 ms between chunks at 100,000 appends/s.
  void TouchIndexChunk();
  static constexpr size_t kIndexChunkSlice = 64 << 10;
  static constexpr std::chrono::milliseconds kIndexChunkPause{1};
  // Stores the last part of `index` (if it holds entries) and its closing
  // record, which states the segment's `file_size`.
  Status PersistSegmentIndex(uint64_t file_size, SegmentIndexBuilder index);
  // Stores a rolled segment's index, then marks it closed (trimmable).
  void CloseSegment(std::shared_ptr<Segment> seg, uint64_t file_size, SegmentIndexBuilder index);
  // The indexer thread: stores index parts and runs CloseSegment for
  // rolled segments, so that neither the encoding nor the RocksDB writes
  // stall group commits.
  void IndexerLoop();
  // Waits until every index part handed over is stored, every rolled
  // segment is closed (its index stored) and no zero-ahead write is in
  // progress.
  void WaitForRolledSegments();
  // Zero-ahead, writer side: called before the group at [from, to) of
  // open_ is written. Waits while zeros are being written where the group
  // goes (rare: the indexer zeroes from at least kZeroGap past the writer's
  // end), records `to` as the writer's end and asks the indexer for more
  // zeros when fewer than zero_ahead_bytes lie ahead.
  void ClaimForWrite(uint64_t from, uint64_t to);
  // Zero-ahead, indexer side: writes and syncs zeros chunk by chunk until
  // zero_ahead_bytes lie past the writer's end (or the segment's size is
  // reached). Called and returns with `l` (on rolled_mu_) held; drops it
  // while writing. Leaves early when a rolled segment waits to be closed.
  void ZeroAhead(std::unique_lock<std::mutex>& l);
  // Writes and syncs zeros to [from, to) of seg through seg->zero_file,
  // with `l` (on rolled_mu_) dropped meanwhile; the range is busy for
  // ClaimForWrite until then. On failure logs it, stops zeroing seg and
  // returns false.
  bool WriteZeros(std::unique_lock<std::mutex>& l, const std::shared_ptr<Segment>& seg,
                  uint64_t from, uint64_t to);
  // The next chunk ZeroAhead would zero in zero_seg_, if any: from
  // max(zero_end_, writer_end_ + kZeroGap), up to zero_ahead_bytes past the
  // writer's end and never past segment_bytes. Requires rolled_mu_ held.
  bool NextZeroChunk(uint64_t* from, uint64_t* to) const;
  // Whether the segment after zero_seg_ still needs preparing: zero_seg_
  // is zeroed up to segment_bytes (its writer is within zero_ahead_bytes
  // of the end) and the next one is not yet created, or not yet zeroed up
  // to zero_ahead_bytes. Requires rolled_mu_ held.
  bool NextSegmentWanted() const;
  // How much of the next segment is zeroed before its roll.
  uint64_t NextZeroTarget() const;
  // One step of preparing the next segment, as ZeroAhead does for the open
  // one: create it (and sync the directory), or zero its next chunk. Called
  // and returns with `l` held; drops it for the I/O.
  void PrepareNextSegment(std::unique_lock<std::mutex>& l);
  // The prepared segment for RollSegment, if it follows open_ (waits while
  // one is being created); sets *zeroed to the bytes zeroed at its start.
  std::shared_ptr<Segment> TakeNextSegment(uint64_t* zeroed);
  // Forgets the prepared segment, if any, and removes its file (it holds
  // no record). Requires the writer to be quiesced or gone.
  void DropNextSegment();
  // Truncates seg's file to `size` (and syncs) if it is longer: drops the
  // zeros written ahead past its last record.
  Status CutZeroTail(Segment* seg, uint64_t size);
  // Opens seg->zero_file if zero-ahead is on (a failure only turns it off
  // for this segment).
  void OpenZeroFile(Segment* seg);

  // segment_recovery.cc
  // Reads every record of seg's file into the store's index and bitmaps
  // and into *index (storing its full parts), truncating a torn tail.
  Status ScanSegment(Segment* seg, RecoveryReport* report, SegmentIndexBuilder* index);
  void AddRecovered(Segment* seg, const IndexEntry& e);
  Status CreateSegment(uint32_t id, std::shared_ptr<Segment>* out);

  // segment_wipe.cc
  // Deletes every segment file in the directory (durably: the directory is
  // synced), then every segment index, the trim mark and the wipe marker
  // (MetadataStore::FinishWipe). Requires the marker to be durable already
  // and nothing to write segment files or indexes meanwhile (Wipe quiesces
  // the store; Recover runs before Start).
  Status EraseSegmentData();
  // Wipe after the marker is durable: forget, erase, start a new segment.
  Status WipeMarked();

  const SegmentStoreOptions options_;
  const bool zero_ahead_;  // zero_ahead_bytes > 0 and threaded writes
  FileSystem* const fs_;
  Clock* const clock_;  // times group commits
  const int64_t opened_nanos_;
  std::unique_ptr<MetadataStore> meta_;

  std::mutex inline_mu_;  // inline_writes: serializes Appends (the "writer")
  std::mutex mu_;
  std::condition_variable queue_cv_;
  AddressIndex index_;                                     // GUARDED_BY(mu_)
  std::map<uint32_t, std::shared_ptr<Segment>> segments_;  // GUARDED_BY(mu_)
  std::deque<PendingAppend> queue_;                        // GUARDED_BY(mu_)
  uint64_t pending_bytes_ = 0;                             // GUARDED_BY(mu_)
  uint64_t submitted_seq_ = 0;                             // GUARDED_BY(mu_)
  uint64_t durable_entries_ = 0;                           // GUARDED_BY(mu_)
  uint64_t trim_mark_ = 0;                                 // GUARDED_BY(mu_)
  Status broken_;                                          // GUARDED_BY(mu_)
  bool wiping_ = false;    // Wipe in progress: refuse appends  // GUARDED_BY(mu_)
  bool stopping_ = false;  // GUARDED_BY(mu_)

  std::mutex bitmap_mu_;
  Roaring64Map written_;  // GUARDED_BY(bitmap_mu_)
  uint64_t tail_ = 0;     // highest address ever held + 1      // GUARDED_BY(bitmap_mu_)
  std::unordered_map<StreamId, Roaring64Map> streams_;  // GUARDED_BY(bitmap_mu_)

  std::mutex flush_mu_;
  std::condition_variable flush_cv_;
  std::atomic<uint64_t> completed_seq_{0};

  std::mutex commit_mu_;
  CommitLatency commit_;  // GUARDED_BY(commit_mu_)

  std::mutex trim_mu_;  // serializes Trim
  std::mutex seal_mu_;  // serializes SetSealedEpoch and Wipe
  std::atomic<uint64_t> sealed_epoch_{0};

  // Writer thread only (inline_writes: under inline_mu_).
  std::shared_ptr<Segment> open_;
  SegmentIndexBuilder open_index_;  // open_'s
  std::vector<PendingAppend> group_;
  std::vector<WrittenRecord> written_records_;  // the group's accepted records, in file order
  std::unique_ptr<char[]> buffer_;              // serialized group, reused
  size_t buffer_capacity_ = 0;
  std::vector<ConstBuffer> bufs_;  // the group as written: runs of buffer_ and large payloads
  Status group_error_;             // broken_ as seen when the group was taken
  std::thread writer_;

  // Rolled segments waiting for the indexer thread (none with inline_writes).
  struct RolledSegment {
    std::shared_ptr<Segment> segment;
    uint64_t file_size;
    SegmentIndexBuilder index;
  };
  std::mutex rolled_mu_;
  std::condition_variable rolled_cv_;
  // Full parts of segment indexes, in the order taken; the indexer stores
  // them before closing rolled segments (a segment's parts are queued
  // before its roll, and its closing record must come after them).
  std::deque<SegmentIndexPart> index_parts_;  // GUARDED_BY(rolled_mu_)
  std::deque<RolledSegment> rolled_;          // GUARDED_BY(rolled_mu_)
  bool indexer_busy_ = false;  // GUARDED_BY(rolled_mu_) a part or segment taken, not yet stored
  // Zero-ahead state (all GUARDED_BY(rolled_mu_)); see ClaimForWrite.
  std::shared_ptr<Segment> zero_seg_;       // the open segment these describe
  uint64_t zero_end_ = 0;                   // zeros are durable in [.., zero_end_) of zero_seg_
  uint64_t writer_end_ = 0;                 // the writer writes zero_seg_ only below this
  bool zero_wanted_ = false;                // the writer asked for more zeros
  const Segment* zero_busy_seg_ = nullptr;  // zeros being written to [from, to) of it
  uint64_t zero_busy_from_ = 0;
  uint64_t zero_busy_to_ = 0;
  // The segment after zero_seg_, created (its directory entry synced) and
  // zeroed in [0, next_zero_end_) ahead of the roll that opens it, so that
  // a roll costs the writer no file creation and the first group commits
  // in the new segment overwrite zeros instead of growing the file.
  // All GUARDED_BY(rolled_mu_).
  std::shared_ptr<Segment> next_seg_;
  uint64_t next_zero_end_ = 0;
  bool next_creating_ = false;     // the indexer is creating the next segment's file
  uint32_t next_failed_id_ = 0;    // creating this segment ahead failed: the roll creates it
  bool indexer_stopping_ = false;  // GUARDED_BY(rolled_mu_)
  // index_ asked for its next chunk of pages (AddressIndex::TakeChunkRequest).
  bool chunk_wanted_ = false;        // GUARDED_BY(rolled_mu_)
  AddressIndex::Chunk index_chunk_;  // indexer thread only: being faulted in
  // Indexer thread only: chunks that could not be mapped, and when that
  // was last logged.
  uint64_t chunk_map_failures_ = 0;
  std::chrono::steady_clock::time_point chunk_map_warned_{};
  std::thread indexer_;
};

}  // namespace tally::log
