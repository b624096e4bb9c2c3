// The writer thread: takes every queued append (up to max_batch_bytes),
// serializes the group into one buffer, writes it with one File::Write(...,
// sync=true) (a write and an fdatasync: group commit), then
// publishes the records to the index and runs the callbacks. Appends keep
// queueing while a group syncs. With inline_writes, AppendInline
// (segment_store.cc) runs CommitGroup on the caller's thread instead, with
// a group of one Append.
//
// Zero-ahead (threaded writes only): the indexer thread writes and syncs
// zeros ahead of the open segment's end, chunk by chunk, through its own
// handle on the file. A group commit then overwrites blocks that are
// allocated and inside the file's size, so its fdatasync flushes data and
// the device cache but needs no ext4 journal commit (log_bench's
// storage_3x_paced_64B: p50 0.59-0.67 ms per group without, 0.45-0.49 ms
// with). The writer never writes where zeros are being written
// (ClaimForWrite waits); a rolled segment's zero tail is cut off before its
// index is stored; recovery reads an all-zero remainder as the clean end.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <new>
#include <utility>

#include "record_format.h"
#include "segment_store_impl.h"

namespace tally::log {

namespace {
// Payloads at least this large are not copied into the group buffer.
constexpr size_t kScatterPayloadBytes = 2048;
// Zero-ahead writes this much per sync, starting at least kZeroGap past the
// writer's end (so the writer, which keeps writing meanwhile, does not run
// into the range being zeroed). Small, because a group commit whose sync
// overlaps a zero chunk waits for it: 2 MiB chunks (10 ms) raised the p99.
constexpr uint64_t kZeroChunk = 128ull << 10;
constexpr uint64_t kZeroGap = 1ull << 20;

const char* ZeroBytes() {
  static const std::vector<char>* zeros = new std::vector<char>(kZeroChunk, '\0');
  return zeros->data();
}
}  // namespace

void SegmentStoreImpl::WriterLoop() {
  while (TakeGroup()) {
    CommitGroup();
    CompleteGroup();
  }
}

void SegmentStoreImpl::CommitGroup() {
  uint64_t total = 0;
  for (const PendingAppend& p : group_) total += p.bytes;
  if (total > 0) {
    if (!group_error_.ok()) {
      FailGroup(group_error_);
    } else {
      uint64_t base = 0;
      Status st = WriteGroup(&base, &total);
      if (st.ok()) {
        PublishGroup(base, total);
      } else {
        spdlog::error("log store {}: {}; failing the group and refusing further writes",
                      options_.dir, st.ToString());
        FailGroup(st);
        // Best effort: cut what may have reached the file so that records
        // never acknowledged do not reappear at the next open.
        if (open_ != nullptr) {
          Status cut = open_->file->Truncate(open_->size);
          if (cut.ok()) cut = open_->file->Sync();
          if (!cut.ok()) spdlog::warn("log store {}: {}", options_.dir, cut.ToString());
        }
      }
    }
  }
}

bool SegmentStoreImpl::TakeGroup() {
  std::unique_lock<std::mutex> l(mu_);
  queue_cv_.wait(l, [&] { return !queue_.empty() || stopping_; });
  if (queue_.empty()) return false;  // stopping and drained
  uint64_t bytes = 0;
  while (!queue_.empty() &&
         (group_.empty() || bytes + queue_.front().bytes <= options_.max_batch_bytes)) {
    bytes += queue_.front().bytes;
    group_.push_back(std::move(queue_.front()));
    queue_.pop_front();
  }
  group_error_ = broken_;
  return true;
}

Status SegmentStoreImpl::WriteGroup(uint64_t* base_offset, uint64_t* total) {
  if (open_->size >= options_.segment_bytes) TALLY_RETURN_IF_ERROR(RollSegment());
  if (buffer_capacity_ < *total) {
    buffer_capacity_ = std::max<size_t>(*total, buffer_capacity_ * 2);
    buffer_.reset(new char[buffer_capacity_]);
  }
  // Small records are copied whole into buffer_; large payloads are written
  // straight from the caller's strings (scatter-gather), saving a copy.
  char* out = buffer_.get();
  char* run = out;
  written_records_.clear();
  bufs_.clear();
  for (const PendingAppend& p : group_) {
    for (size_t i = 0; i < p.records.size(); ++i) {
      if (!p.statuses[i].ok()) continue;
      const Record& r = p.records[i];
      const size_t len = format::EncodedSize(r);
      if (r.payload.size() >= kScatterPayloadBytes) {
        format::EncodeRecordPrefix(r, out);
        out += format::PrefixSize(r);
        bufs_.emplace_back(run, out - run);
        bufs_.emplace_back(r.payload.data(), r.payload.size());
        run = out;
      } else {
        format::EncodeRecord(r, out);
        out += len;
      }
      written_records_.push_back(WrittenRecord{r.address.value(), static_cast<uint32_t>(len),
                                               static_cast<uint32_t>(r.streams.size()),
                                               r.streams.data()});
    }
  }
  if (out != run) bufs_.emplace_back(run, out - run);
  *base_offset = open_->size;
  if (zero_ahead_) {
    uint64_t len = 0;
    for (const ConstBuffer& b : bufs_) len += b.size();
    ClaimForWrite(*base_offset, *base_offset + len);
  }
  const int64_t started = clock_->NowNanos();
  Status st = open_->file->Write(*base_offset, std::span<const ConstBuffer>(bufs_), true);
  if (!st.ok()) {
    return st.WithContext(fmt::format("group commit of {} bytes at offset {} of {}", *total,
                                      *base_offset, open_->path));
  }
  const int64_t took = std::max<int64_t>(0, clock_->NowNanos() - started);
  std::lock_guard<std::mutex> l(commit_mu_);
  commit_.Add(static_cast<uint64_t>(took) / 1000, written_records_.size(), *total);
  return Status::OK();
}

void SegmentStoreImpl::PublishGroup(uint64_t base, uint64_t total) {
  const uint32_t seg_id = open_->id;
  const std::vector<WrittenRecord>& recs = written_records_;
  const size_t n = recs.size();
  uint64_t published = 0;
  {
    std::lock_guard<std::mutex> l(mu_);
    uint64_t offset = base;
    for (size_t i = 0; i < n; ++i) {
      const uint64_t a = recs[i].address;
      open_->Cover(a);
      // Absent only if a concurrent Trim dropped it; then it stays unindexed.
      if (IndexEntry* e = index_.Find(a)) {
        e->segment = seg_id;
        e->offset = offset;
        e->Set(EntryState::kDurable, recs[i].length);
        open_index_.Add(*e);
        ++published;
      }
      offset += recs[i].length;
    }
    open_->size = offset;
    pending_bytes_ -= total;
    durable_entries_ += published;
  }
  {
    std::lock_guard<std::mutex> l(bitmap_mu_);
    StreamId last_stream;
    Roaring64Map* last_bitmap = nullptr;
    for (size_t i = 0; i < n; ++i) {
      const uint64_t a = recs[i].address;
      written_.add(a);
      tail_ = std::max(tail_, a + 1);
      for (uint32_t k = 0; k < recs[i].nstreams; ++k) {
        const StreamId& s = recs[i].streams[k];
        if (last_bitmap == nullptr || last_stream != s) {
          last_stream = s;
          last_bitmap = &streams_[s];
        }
        last_bitmap->add(a);
      }
    }
  }
  for (size_t i = 0; i < n; ++i) {
    for (uint32_t k = 0; k < recs[i].nstreams; ++k) {
      open_index_.AddStream(recs[i].streams[k], recs[i].address);
    }
  }
  MaybeStoreIndexPart();
}

void SegmentStoreImpl::MaybeStoreIndexPart() {
  const uint64_t n = open_index_.part_entries();
  if (n == 0 || n < options_.index_part_entries) return;
  if (options_.inline_writes) {
    StoreIndexPart(open_index_.TakePart());
    return;
  }
  {
    std::lock_guard<std::mutex> l(rolled_mu_);
    index_parts_.push_back(open_index_.TakePart());
  }
  rolled_cv_.notify_all();
}

void SegmentStoreImpl::StoreIndexPart(SegmentIndexPart part) {
  const uint32_t id = part.segment_id;
  const uint32_t number = part.number;
  Status st = meta_->PutIndexPart(id, number, EncodeIndexPart(part));
  if (!st.ok()) {
    spdlog::warn(
        "log store {}: part {} of the index of segment {} not stored ({}); it will be "
        "scanned at the next start",
        options_.dir, number, id, st.ToString());
  }
}

void SegmentStoreImpl::FailGroup(const Status& error) {
  std::lock_guard<std::mutex> l(mu_);
  if (broken_.ok()) broken_ = error;
  for (PendingAppend& p : group_) {
    for (size_t i = 0; i < p.records.size(); ++i) {
      if (!p.statuses[i].ok()) continue;
      const uint64_t a = p.records[i].address.value();
      index_.Erase(a);
      p.statuses[i] = IoError(
          fmt::format("address {} not written: {}; the store refuses writes until it is reopened",
                      a, error.message()));
    }
    pending_bytes_ -= p.bytes;
  }
}

void SegmentStoreImpl::CompleteGroup() {
  uint64_t last_seq = 0;
  for (PendingAppend& p : group_) {
    last_seq = p.seq;
    if (p.done) p.done(std::move(p.statuses));
  }
  group_.clear();
  completed_seq_.store(last_seq);
  { std::lock_guard<std::mutex> l(flush_mu_); }
  flush_cv_.notify_all();
}

void SegmentStoreImpl::ClaimForWrite(uint64_t from, uint64_t to) {
  std::unique_lock<std::mutex> l(rolled_mu_);
  if (zero_seg_ != open_) {  // the first write since Start or a wipe
    zero_seg_ = open_;
    zero_end_ = 0;
    writer_end_ = 0;
  }
  rolled_cv_.wait(l, [&] {
    return zero_busy_seg_ != open_.get() || to <= zero_busy_from_ || from >= zero_busy_to_;
  });
  writer_end_ = std::max(writer_end_, to);
  uint64_t from_ignored = 0, to_ignored = 0;
  if (!zero_wanted_ && (NextZeroChunk(&from_ignored, &to_ignored) || NextSegmentWanted())) {
    zero_wanted_ = true;
    l.unlock();
    rolled_cv_.notify_all();
  }
}

bool SegmentStoreImpl::NextZeroChunk(uint64_t* from, uint64_t* to) const {
  const uint64_t limit = options_.segment_bytes;
  const uint64_t want = std::min(writer_end_ + options_.zero_ahead_bytes, limit);
  *from = std::max(zero_end_, writer_end_ + kZeroGap);
  if (*from >= want) return false;
  *to = std::min(*from + kZeroChunk, limit);
  return true;
}

void SegmentStoreImpl::ZeroAhead(std::unique_lock<std::mutex>& l) {
  while (!indexer_stopping_ && rolled_.empty() && zero_seg_ != nullptr &&
         zero_seg_->zero_file != nullptr) {
    uint64_t from = 0, to = 0;
    if (!NextZeroChunk(&from, &to)) {
      if (!NextSegmentWanted()) return;
      PrepareNextSegment(l);
      continue;
    }
    std::shared_ptr<Segment> seg = zero_seg_;
    if (!WriteZeros(l, seg, from, to)) return;
    if (zero_seg_ == seg) zero_end_ = std::max(zero_end_, to);
  }
}

bool SegmentStoreImpl::WriteZeros(std::unique_lock<std::mutex>& l,
                                  const std::shared_ptr<Segment>& seg, uint64_t from, uint64_t to) {
  zero_busy_seg_ = seg.get();
  zero_busy_from_ = from;
  zero_busy_to_ = to;
  l.unlock();
  const ConstBuffer chunk(ZeroBytes(), to - from);
  Status st = seg->zero_file->Write(from, std::span<const ConstBuffer>(&chunk, 1), true);
  l.lock();
  zero_busy_seg_ = nullptr;
  // A writer waiting in ClaimForWrite, a WaitForRolledSegments or
  // DropNextSegment.
  rolled_cv_.notify_all();
  if (st.ok()) return true;
  // Only speed is lost: group commits there grow the file, as without it.
  spdlog::warn("log store {}: writing zeros ahead in {} stopped: {}", options_.dir, seg->path,
               st.ToString());
  seg->zero_file.reset();
  return false;
}

uint64_t SegmentStoreImpl::NextZeroTarget() const {
  return std::min(options_.zero_ahead_bytes, options_.segment_bytes);
}

bool SegmentStoreImpl::NextSegmentWanted() const {
  if (zero_seg_ == nullptr || next_creating_) return false;
  // Not before the open segment's own zeros reach its end.
  if (writer_end_ + options_.zero_ahead_bytes < options_.segment_bytes) return false;
  const uint32_t id = zero_seg_->id + 1;
  if (next_seg_ == nullptr) return next_failed_id_ != id;
  return next_seg_->id == id && next_seg_->zero_file != nullptr &&
         next_zero_end_ < NextZeroTarget();
}

void SegmentStoreImpl::PrepareNextSegment(std::unique_lock<std::mutex>& l) {
  const uint32_t id = zero_seg_->id + 1;
  if (next_seg_ == nullptr) {
    // RollSegment and WipeMarked wait while this runs, so zero_seg_ stays.
    next_creating_ = true;
    l.unlock();
    std::shared_ptr<Segment> seg;
    Status st = CreateSegment(id, &seg);
    if (!st.ok()) {
      spdlog::warn(
          "log store {}: creating segment {} ahead of its roll failed ({}); the roll "
          "will try again",
          options_.dir, id, st.ToString());
    }
    l.lock();
    next_creating_ = false;
    rolled_cv_.notify_all();  // a roll or wipe waiting for the creation
    if (!st.ok()) {
      next_failed_id_ = id;
      return;
    }
    next_seg_ = std::move(seg);
    next_zero_end_ = 0;
    return;
  }
  std::shared_ptr<Segment> seg = next_seg_;
  const uint64_t from = next_zero_end_;
  const uint64_t to = std::min(from + kZeroChunk, NextZeroTarget());
  // On failure the roll still takes it, with fewer zeros.
  if (!WriteZeros(l, seg, from, to)) return;
  if (next_seg_ == seg) {
    next_zero_end_ = std::max(next_zero_end_, to);
  } else if (zero_seg_ == seg) {  // rolled into while this chunk was written
    zero_end_ = std::max(zero_end_, to);
  }
}

std::shared_ptr<Segment> SegmentStoreImpl::TakeNextSegment(uint64_t* zeroed) {
  *zeroed = 0;
  if (!zero_ahead_) return nullptr;
  uint32_t stale = 0;
  {
    std::unique_lock<std::mutex> l(rolled_mu_);
    rolled_cv_.wait(l, [&] { return !next_creating_; });
    // No zeros or preparing for the segment being closed: RollSegment
    // points zero_seg_ at the new one (ClaimForWrite at the old, if the
    // roll fails).
    zero_seg_ = nullptr;
    if (next_seg_ == nullptr) return nullptr;
    if (next_seg_->id == open_->id + 1) {
      *zeroed = next_zero_end_;
      next_zero_end_ = 0;
      return std::move(next_seg_);
    }
    stale = next_seg_->id;
  }
  // Prepared after a segment that is no longer open (not expected: only
  // rolls and wipes change open_, and both take or drop it).
  spdlog::error("log store {}: segment {} was prepared while segment {} is open; removing it",
                options_.dir, stale, open_->id);
  DropNextSegment();
  return nullptr;
}

void SegmentStoreImpl::DropNextSegment() {
  std::shared_ptr<Segment> next;
  {
    std::unique_lock<std::mutex> l(rolled_mu_);
    rolled_cv_.wait(l, [&] {
      return !next_creating_ && (next_seg_ == nullptr || zero_busy_seg_ != next_seg_.get());
    });
    next = std::move(next_seg_);
    next_seg_ = nullptr;
    next_zero_end_ = 0;
  }
  if (next == nullptr) return;
  next->zero_file.reset();
  next->file.reset();
  // It holds zeros only. Left behind (a failed removal, or a crash before
  // the removal reached the disk), recovery opens it as an empty segment.
  Status st = fs_->Remove(next->path);
  if (!st.ok()) spdlog::warn("log store {}: {}", options_.dir, st.ToString());
}

Status SegmentStoreImpl::CutZeroTail(Segment* seg, uint64_t size) {
  TALLY_ASSIGN_OR_RETURN(const uint64_t physical, seg->file->Size());
  if (physical <= size) return Status::OK();
  TALLY_RETURN_IF_ERROR(seg->file->Truncate(size));
  return seg->file->Sync();
}

void SegmentStoreImpl::OpenZeroFile(Segment* seg) {
  if (!zero_ahead_) return;
  auto f = fs_->Open(seg->path, OpenOptions{});
  if (!f.ok()) {
    spdlog::warn("log store {}: no zero-ahead for {}: {}", options_.dir, seg->path,
                 f.status().ToString());
    return;
  }
  seg->zero_file = std::move(*f);
}

Status SegmentStoreImpl::RollSegment() {
  uint64_t zeroed = 0;
  std::shared_ptr<Segment> next = TakeNextSegment(&zeroed);
  if (next == nullptr) TALLY_RETURN_IF_ERROR(CreateSegment(open_->id + 1, &next));
  RolledSegment rolled{open_, open_->size, std::move(open_index_)};
  open_index_ = SegmentIndexBuilder(next->id);
  {
    std::lock_guard<std::mutex> l(mu_);
    segments_[next->id] = next;
  }
  open_ = std::move(next);
  // The rolled segment stays "not closed" (so Trim leaves it alone) until
  // its index is stored; a crash before that only means it is scanned at
  // the next start.
  if (options_.inline_writes) {
    CloseSegment(std::move(rolled.segment), rolled.file_size, std::move(rolled.index));
    return Status::OK();
  }
  {
    std::lock_guard<std::mutex> l(rolled_mu_);
    rolled_.push_back(std::move(rolled));
    // Zeros now go to the new segment (ZeroAhead stops writing to the old
    // one: it closes rolled segments first).
    zero_seg_ = open_;
    zero_end_ = zeroed;
    writer_end_ = 0;
  }
  rolled_cv_.notify_all();  // the indexer, and any WaitForRolledSegments
  return Status::OK();
}

void SegmentStoreImpl::CloseSegment(std::shared_ptr<Segment> seg, uint64_t file_size,
                                    SegmentIndexBuilder index) {
  // Zeros written ahead past the last record go first: the stored index
  // describes the file's exact size (recovery checks it).
  seg->zero_file.reset();
  Status st = CutZeroTail(seg.get(), file_size);
  if (!st.ok()) {
    spdlog::warn(
        "log store {}: cutting the zero tail of segment {} failed ({}); it will be scanned at "
        "the next start",
        options_.dir, seg->id, st.ToString());
    std::lock_guard<std::mutex> l(mu_);
    seg->closed = true;
    return;
  }
  st = PersistSegmentIndex(file_size, std::move(index));
  if (!st.ok()) {
    spdlog::warn(
        "log store {}: index of segment {} not stored ({}); it will be scanned at the "
        "next start",
        options_.dir, seg->id, st.ToString());
  }
  std::lock_guard<std::mutex> l(mu_);
  seg->closed = true;
}

void SegmentStoreImpl::IndexerLoop() {
  std::unique_lock<std::mutex> l(rolled_mu_);
  while (true) {
    auto ready = [&] {
      return indexer_stopping_ || !index_parts_.empty() || !rolled_.empty() || zero_wanted_ ||
             chunk_wanted_;
    };
    if (index_chunk_.empty()) {
      rolled_cv_.wait(l, ready);
    } else if (!rolled_cv_.wait_for(l, kIndexChunkPause, ready)) {
      // Nothing else to do: fault in the next slice of the index's chunk.
      l.unlock();
      TouchIndexChunk();
      l.lock();
      continue;
    }
    if (chunk_wanted_ && !indexer_stopping_) {
      chunk_wanted_ = false;
      l.unlock();
      try {
        index_chunk_ = AddressIndex::MapChunk();
      } catch (const std::bad_alloc&) {
        // Asked again at the next append that finds too few pages ready:
        // under memory pressure that is every append, so say it once a
        // minute, with the count.
        ++chunk_map_failures_;
        const auto now = std::chrono::steady_clock::now();
        if (chunk_map_failures_ == 1 || now - chunk_map_warned_ >= std::chrono::minutes(1)) {
          spdlog::warn(
              "log store {}: could not map index memory ahead ({} time(s) so far); the index "
              "maps it when it needs it",
              options_.dir, chunk_map_failures_);
          chunk_map_warned_ = now;
        }
        std::lock_guard<std::mutex> m(mu_);
        index_.AddChunk(AddressIndex::Chunk());
      }
      l.lock();
      continue;
    }
    if (!index_parts_.empty()) {
      // Before any rolled segment: a segment's parts are queued before its
      // roll, and its closing record must follow them.
      SegmentIndexPart part = std::move(index_parts_.front());
      index_parts_.pop_front();
      indexer_busy_ = true;
      l.unlock();
      StoreIndexPart(std::move(part));
      l.lock();
      indexer_busy_ = false;
      rolled_cv_.notify_all();  // WaitForRolledSegments
      continue;
    }
    if (rolled_.empty()) {
      if (indexer_stopping_) return;  // every part and rolled segment is stored
      zero_wanted_ = false;
      ZeroAhead(l);
      continue;
    }
    RolledSegment r = std::move(rolled_.front());
    rolled_.pop_front();
    indexer_busy_ = true;
    l.unlock();
    CloseSegment(std::move(r.segment), r.file_size, std::move(r.index));
    l.lock();
    indexer_busy_ = false;
    rolled_cv_.notify_all();  // WaitForRolledSegments
  }
}

void SegmentStoreImpl::TouchIndexChunk() {
  if (!index_chunk_.Touch(kIndexChunkSlice)) return;
  std::lock_guard<std::mutex> l(mu_);
  index_.AddChunk(std::move(index_chunk_));
}

void SegmentStoreImpl::WaitForRolledSegments() {
  std::unique_lock<std::mutex> l(rolled_mu_);
  rolled_cv_.wait(l, [&] {
    return index_parts_.empty() && rolled_.empty() && !indexer_busy_ && zero_busy_seg_ == nullptr;
  });
}

Status SegmentStoreImpl::PersistSegmentIndex(uint64_t file_size, SegmentIndexBuilder index) {
  std::vector<std::pair<uint32_t, std::string>> last;
  if (index.part_entries() > 0) {
    SegmentIndexPart part = index.TakePart();
    last.emplace_back(part.number, EncodeIndexPart(part));
  }
  return meta_->PutSegmentIndex(index.segment_id(), index.EncodeClose(file_size), last);
}

Status SegmentStoreImpl::CreateSegment(uint32_t id, std::shared_ptr<Segment>* out) {
  auto seg = std::make_shared<Segment>();
  seg->id = id;
  seg->path = JoinPath(options_.dir, SegmentFileName(id));
  OpenOptions oo;
  oo.create = true;
  oo.exclusive = true;
  TALLY_ASSIGN_OR_RETURN(seg->file, fs_->Open(seg->path, oo));
  Status st = fs_->SyncDir(options_.dir);
  if (!st.ok()) {
    // Not left behind: the next attempt creates it exclusively again.
    seg->file.reset();
    Status rm = fs_->Remove(seg->path);
    if (!rm.ok()) {
      return Status(st.code(), fmt::format("{}; removing the new {} failed too ({})", st.message(),
                                           seg->path, rm.message()));
    }
    return st;
  }
  OpenZeroFile(seg.get());
  *out = std::move(seg);
  return Status::OK();
}

}  // namespace tally::log
