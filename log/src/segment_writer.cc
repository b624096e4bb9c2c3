// The writer thread: takes every queued append (up to max_batch_bytes),
// serializes the group into one buffer, writes it with one File::Write(...,
// sync=true) (io_uring writes linked to fdatasync: group commit), then
// publishes the records to the index and runs the callbacks. Appends keep
// queueing while a group syncs. With inline_writes, AppendInline
// (segment_store.cc) runs CommitGroup on the caller's thread instead, with
// a group of one Append.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "record_format.h"
#include "segment_store_impl.h"

namespace tally::log {

namespace {
constexpr size_t kPrefetchAhead = 8;
// Payloads at least this large are not copied into the group buffer.
constexpr size_t kScatterPayloadBytes = 2048;
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
  Status st = open_->file->Write(*base_offset, std::span<const ConstBuffer>(bufs_), true);
  if (!st.ok()) {
    return st.WithContext(fmt::format("group commit of {} bytes at offset {} of {}", *total,
                                      *base_offset, open_->path));
  }
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
      if (i + kPrefetchAhead < n) index_.Prefetch(recs[i + kPrefetchAhead].address);
      const uint64_t a = recs[i].address;
      open_->Cover(a);
      // Absent only if a concurrent Trim dropped it; then it stays unindexed.
      if (IndexEntry* e = index_.Find(a)) {
        e->segment = seg_id;
        e->offset = offset;
        e->Set(EntryState::kDurable, recs[i].length);
        open_index_.entries.push_back(*e);
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
  StreamId last_stream;
  Roaring64Map* last_bitmap = nullptr;
  for (size_t i = 0; i < n; ++i) {
    for (uint32_t k = 0; k < recs[i].nstreams; ++k) {
      const StreamId& s = recs[i].streams[k];
      if (last_bitmap == nullptr || last_stream != s) {
        last_stream = s;
        last_bitmap = &open_index_.streams[s];
      }
      last_bitmap->add(recs[i].address);
    }
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

Status SegmentStoreImpl::RollSegment() {
  std::shared_ptr<Segment> next;
  TALLY_RETURN_IF_ERROR(CreateSegment(open_->id + 1, &next));
  RolledSegment rolled{open_, open_->size, std::move(open_index_)};
  open_index_ = OpenSegmentIndex{};
  ReserveOpenIndex();
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
  }
  rolled_cv_.notify_all();  // the indexer, and any WaitForRolledSegments
  return Status::OK();
}

void SegmentStoreImpl::CloseSegment(std::shared_ptr<Segment> seg, uint64_t file_size,
                                    OpenSegmentIndex index) {
  Status st = PersistSegmentIndex(seg->id, file_size, std::move(index));
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
    rolled_cv_.wait(l, [&] { return indexer_stopping_ || !rolled_.empty(); });
    if (rolled_.empty()) return;  // stopping, and every rolled segment is stored
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

void SegmentStoreImpl::WaitForRolledSegments() {
  std::unique_lock<std::mutex> l(rolled_mu_);
  rolled_cv_.wait(l, [&] { return rolled_.empty() && !indexer_busy_; });
}

void SegmentStoreImpl::ReserveOpenIndex() {
  // Avoids regrowing (and copying) the entry list while the segment fills;
  // untouched reserved pages cost no memory.
  const uint64_t expected = std::min<uint64_t>(options_.segment_bytes / 128, 1 << 20);
  if (open_index_.entries.capacity() < expected) open_index_.entries.reserve(expected);
}

Status SegmentStoreImpl::PersistSegmentIndex(uint32_t id, uint64_t file_size,
                                             OpenSegmentIndex index) {
  SegmentIndexData data;
  data.segment_id = id;
  data.file_size = file_size;
  data.entries = std::move(index.entries);
  data.streams.reserve(index.streams.size());
  for (auto& [stream, bm] : index.streams) {
    bm.runOptimize();
    data.streams.emplace_back(stream, std::move(bm));
  }
  return meta_->PutSegmentIndex(id, EncodeSegmentIndex(data));
}

Status SegmentStoreImpl::CreateSegment(uint32_t id, std::shared_ptr<Segment>* out) {
  auto seg = std::make_shared<Segment>();
  seg->id = id;
  seg->path = JoinPath(options_.dir, SegmentFileName(id));
  OpenOptions oo;
  oo.create = true;
  oo.exclusive = true;
  TALLY_ASSIGN_OR_RETURN(seg->file, fs_->Open(seg->path, oo));
  TALLY_RETURN_IF_ERROR(fs_->SyncDir(options_.dir));
  *out = std::move(seg);
  return Status::OK();
}

}  // namespace tally::log
