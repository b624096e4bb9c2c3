// SegmentStore: opening, submission (write-once decided here), reads, seal
// and trim. The writer thread lives in segment_writer.cc, recovery in
// segment_recovery.cc, wiping in segment_wipe.cc.

#include "tally/log/segment_store.h"

#include <fmt/format.h>
#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>

#include "record_format.h"
#include "segment_store_impl.h"

namespace tally::log {

namespace {

// Bits of `bm` at or above `mark`.
Roaring64Map KeepFrom(const Roaring64Map& bm, uint64_t mark) {
  Roaring64Map out;
  auto it = bm.begin();
  if (!it.move(mark)) return out;
  for (auto end = bm.end(); it != end; ++it) out.add(*it);
  return out;
}

// Ascending members of `bm` in [from, to), at most `limit`.
std::vector<Address> Collect(const Roaring64Map& bm, uint64_t from, uint64_t to, size_t limit) {
  std::vector<Address> out;
  if (from >= to || limit == 0) return out;
  auto it = bm.begin();
  if (!it.move(from)) return out;
  for (auto end = bm.end(); it != end && *it < to && out.size() < limit; ++it) {
    out.push_back(Address(*it));
  }
  return out;
}

}  // namespace

std::string SegmentFileName(uint32_t id) { return fmt::format("seg-{:020}.log", id); }

Result<std::unique_ptr<SegmentStore>> SegmentStore::Open(SegmentStoreOptions options,
                                                         RecoveryReport* report) {
  if (options.dir.empty()) return InvalidArgument("SegmentStoreOptions.dir is empty; set it");
  if (options.env.fs == nullptr) options.env = DefaultEnv();
  constexpr uint64_t kMaxPayload =
      AddressIndex::kMaxLength - format::kHeaderSize - format::kMaxStreams * format::kStreamIdSize;
  if (options.max_record_bytes > kMaxPayload) {
    return InvalidArgument(fmt::format("max_record_bytes {} exceeds the supported maximum {}",
                                       options.max_record_bytes, kMaxPayload));
  }
  if (options.segment_bytes == 0 || options.max_batch_bytes == 0) {
    return InvalidArgument("segment_bytes and max_batch_bytes must be positive");
  }
  TALLY_RETURN_IF_ERROR(options.env.fs->CreateDirs(options.dir));
  TALLY_ASSIGN_OR_RETURN(
      auto meta, MetadataStore::Open(JoinPath(options.dir, "metadata"), options.metadata_env));
  auto store = std::make_unique<SegmentStoreImpl>(std::move(options), std::move(meta));
  RecoveryReport local;
  TALLY_RETURN_IF_ERROR(store->Recover(report != nullptr ? report : &local));
  store->Start();
  return std::unique_ptr<SegmentStore>(std::move(store));
}

Status SegmentStore::AppendSync(Record record) {
  std::promise<Status> promise;
  std::future<Status> result = promise.get_future();
  std::vector<Record> records;
  records.push_back(std::move(record));
  Append(std::move(records),
         [&promise](std::vector<Status> statuses) { promise.set_value(std::move(statuses[0])); });
  return result.get();
}

SegmentStoreImpl::SegmentStoreImpl(SegmentStoreOptions options, std::unique_ptr<MetadataStore> meta)
    : options_(std::move(options)),
      zero_ahead_(!options_.inline_writes && options_.zero_ahead_bytes > 0),
      fs_(options_.env.fs),
      clock_(options_.env.clock != nullptr ? options_.env.clock : DefaultEnv().clock),
      opened_nanos_(clock_->NowNanos()),
      meta_(std::move(meta)) {}

SegmentStoreImpl::~SegmentStoreImpl() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
  }
  queue_cv_.notify_all();
  if (writer_.joinable()) writer_.join();
  // After the writer: it is the only producer of rolled segments.
  {
    std::lock_guard<std::mutex> l(rolled_mu_);
    indexer_stopping_ = true;
  }
  rolled_cv_.notify_all();
  if (indexer_.joinable()) indexer_.join();
  DropNextSegment();
  // A clean close leaves the open segment without its zero tail (recovery
  // would read it as the clean end anyway).
  if (open_ != nullptr && zero_ahead_) {
    open_->zero_file.reset();
    Status st = CutZeroTail(open_.get(), open_->size);
    if (!st.ok()) spdlog::warn("log store {}: at close: {}", options_.dir, st.ToString());
  }
}

void SegmentStoreImpl::Start() {
  if (options_.inline_writes) return;
  writer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "tally-segwriter");
    WriterLoop();
  });
  indexer_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "tally-segindex");
    IndexerLoop();
  });
}

Status SegmentStoreImpl::CheckRecord(const Record& r) const {
  if (r.address == kNoAddress) {
    return InvalidArgument("record address is the kNoAddress sentinel; use a real address");
  }
  if (r.type != RecordType::kData && r.type != RecordType::kHole) {
    return InvalidArgument(fmt::format("record for address {} has unknown type {}",
                                       r.address.value(), static_cast<int>(r.type)));
  }
  if (r.payload.size() > options_.max_record_bytes) {
    return TooLarge(
        fmt::format("record for address {} has a {}-byte payload, more than the {}-byte limit "
                    "(max_record_bytes); split it",
                    r.address.value(), r.payload.size(), options_.max_record_bytes));
  }
  if (r.streams.size() > format::kMaxStreams) {
    return TooLarge(fmt::format("record for address {} names {} streams, more than {}",
                                r.address.value(), r.streams.size(), format::kMaxStreams));
  }
  return Status::OK();
}

void SegmentStoreImpl::Append(std::vector<Record> records, AppendCallback done) {
  PendingAppend p;
  p.records = std::move(records);
  p.statuses.resize(p.records.size());
  p.done = std::move(done);
  for (size_t i = 0; i < p.records.size(); ++i) p.statuses[i] = CheckRecord(p.records[i]);
  if (options_.inline_writes) {
    AppendInline(std::move(p));
    return;
  }
  bool want_chunk = false;
  {
    std::lock_guard<std::mutex> l(mu_);
    AdmitLocked(p);
    queue_.push_back(std::move(p));
    want_chunk = index_.TakeChunkRequest();
  }
  queue_cv_.notify_one();
  if (want_chunk) {
    // The indexer thread faults the index's next chunk in, off mu_.
    {
      std::lock_guard<std::mutex> l(rolled_mu_);
      chunk_wanted_ = true;
    }
    rolled_cv_.notify_all();
  }
}

void SegmentStoreImpl::AdmitLocked(PendingAppend& p) {
  const size_t n = p.records.size();
  for (size_t i = 0; i < n; ++i) {
    if (!p.statuses[i].ok()) continue;
    const Record& r = p.records[i];
    const uint64_t a = r.address.value();
    if (wiping_) {
      p.statuses[i] = Unavailable(fmt::format(
          "address {} not written: the store is being wiped (log.reset); retry after it", a));
      continue;
    }
    if (!broken_.ok()) {
      p.statuses[i] = IoError(fmt::format(
          "address {} not written: the store stopped accepting writes after an I/O error "
          "({}); reopen it to recover",
          a, broken_.message()));
      continue;
    }
    if (stopping_) {
      p.statuses[i] = Cancelled(fmt::format("address {} not written: store is closing", a));
      continue;
    }
    if (a < trim_mark_) {
      p.statuses[i] = Trimmed(fmt::format(
          "address {} is below the trim mark {}; it can no longer be written", a, trim_mark_));
      continue;
    }
    if (const IndexEntry* e = index_.Find(a)) {
      const char* how = e->state() == EntryState::kPending   ? ", write in progress"
                        : e->state() == EntryState::kCorrupt ? ", stored copy corrupt"
                                                             : "";
      p.statuses[i] = AlreadyWritten(fmt::format(
          "address {} already written (epoch {}{}); retry with a new token", a, e->epoch, how));
      continue;
    }
    const size_t size = format::EncodedSize(r);
    if (pending_bytes_ + size > options_.max_pending_bytes) {
      p.statuses[i] = Overloaded(
          fmt::format("address {} not written: {} bytes are waiting to be synced (limit {}, "
                      "max_pending_bytes); back off and retry",
                      a, pending_bytes_, options_.max_pending_bytes));
      continue;
    }
    IndexEntry* e = index_.Insert(a);
    e->epoch = r.epoch.value();
    e->Set(EntryState::kPending, static_cast<uint32_t>(size));
    pending_bytes_ += size;
    p.bytes += size;
  }
  p.seq = ++submitted_seq_;
}

void SegmentStoreImpl::AppendInline(PendingAppend p) {
  std::vector<PendingAppend> finished;
  {
    std::lock_guard<std::mutex> w(inline_mu_);
    {
      std::lock_guard<std::mutex> l(mu_);
      AdmitLocked(p);
      group_error_ = broken_;
    }
    const uint64_t seq = p.seq;
    group_.push_back(std::move(p));
    CommitGroup();
    finished.swap(group_);
    // Under inline_mu_, so completions are stored in submission order.
    completed_seq_.store(seq);
  }
  { std::lock_guard<std::mutex> l(flush_mu_); }
  flush_cv_.notify_all();
  // Outside inline_mu_: a callback may Append again.
  for (PendingAppend& q : finished) {
    if (q.done) q.done(std::move(q.statuses));
  }
}

Result<Record> SegmentStoreImpl::Read(Address address) {
  const uint64_t a = address.value();
  IndexEntry entry;
  std::shared_ptr<Segment> seg;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (a < trim_mark_) {
      return Trimmed(
          fmt::format("address {} is below the trim mark {}; its data is gone", a, trim_mark_));
    }
    const IndexEntry* e = index_.Find(a);
    if (e == nullptr || e->state() == EntryState::kPending) {
      return Unwritten(
          fmt::format("address {} is not written on this log unit; retry later or fill a hole", a));
    }
    entry = *e;
    auto it = segments_.find(entry.segment);
    if (it == segments_.end()) {
      return Internal(fmt::format("address {} indexed in missing segment {}", a, entry.segment));
    }
    seg = it->second;
  }
  if (entry.state() == EntryState::kCorrupt) {
    return Corruption(fmt::format(
        "address {} in {} at offset {} failed its checksum at recovery; not served, read it "
        "from another replica",
        a, seg->path, entry.offset));
  }
  std::string buf(entry.length(), '\0');
  TALLY_ASSIGN_OR_RETURN(size_t n, seg->file->Read(entry.offset, std::span<char>(buf)));
  format::Header h;
  format::ParseResult pr = n < buf.size() ? format::ParseResult::kIncomplete
                                          : format::ParseRecord(std::span<const char>(buf), &h);
  if (pr != format::ParseResult::kOk || h.address != a || h.total_size() != buf.size()) {
    const char* what = pr == format::ParseResult::kBadHeader    ? "header checksum"
                       : pr == format::ParseResult::kBadBody    ? "body checksum"
                       : pr == format::ParseResult::kIncomplete ? "length (file too short)"
                                                                : "address/length";
    return Corruption(fmt::format(
        "address {} in {} at offset {} failed its {} check; not served, read it from another "
        "replica",
        a, seg->path, entry.offset, what));
  }
  return format::DecodeRecord(h, std::span<const char>(buf));
}

std::vector<Address> SegmentStoreImpl::ListAddresses(Address from, Address to, size_t limit) {
  uint64_t lo;
  {
    std::lock_guard<std::mutex> l(mu_);
    lo = std::max(from.value(), trim_mark_);
  }
  std::lock_guard<std::mutex> l(bitmap_mu_);
  return Collect(written_, lo, to.value(), limit);
}

std::vector<Address> SegmentStoreImpl::StreamAddresses(const StreamId& stream, Address from,
                                                       Address to) {
  uint64_t lo;
  {
    std::lock_guard<std::mutex> l(mu_);
    lo = std::max(from.value(), trim_mark_);
  }
  std::lock_guard<std::mutex> l(bitmap_mu_);
  auto it = streams_.find(stream);
  if (it == streams_.end()) return {};
  return Collect(it->second, lo, to.value(), SIZE_MAX);
}

std::vector<StreamId> SegmentStoreImpl::Streams() {
  std::lock_guard<std::mutex> l(bitmap_mu_);
  std::vector<StreamId> out;
  out.reserve(streams_.size());
  // DropBelow erases maps that trimming emptied, so every key here holds an
  // address at or above the trim mark.
  for (const auto& [stream, map] : streams_) out.push_back(stream);
  return out;
}

Result<Epoch> SegmentStoreImpl::SetSealedEpoch(Epoch epoch) {
  std::lock_guard<std::mutex> l(seal_mu_);
  const uint64_t current = sealed_epoch_.load();
  if (epoch.value() <= current) return Epoch(current);
  TALLY_RETURN_IF_ERROR(meta_->PutSealedEpoch(epoch.value()));
  sealed_epoch_.store(epoch.value());
  return epoch;
}

void SegmentStoreImpl::Flush() {
  uint64_t target;
  {
    std::lock_guard<std::mutex> l(mu_);
    target = submitted_seq_;
  }
  std::unique_lock<std::mutex> l(flush_mu_);
  flush_cv_.wait(l, [&] { return completed_seq_.load() >= target; });
}

Status SegmentStoreImpl::Trim(Address mark) {
  std::lock_guard<std::mutex> t(trim_mu_);
  {
    std::lock_guard<std::mutex> l(mu_);
    if (mark.value() <= trim_mark_) return Status::OK();
  }
  TALLY_RETURN_IF_ERROR(meta_->PutTrimMark(mark.value()));
  {
    std::lock_guard<std::mutex> l(mu_);
    trim_mark_ = mark.value();
  }
  // Segments rolled just before become trimmable once their index is stored.
  WaitForRolledSegments();
  return DropBelow(mark.value());
}

Status SegmentStoreImpl::DropBelow(uint64_t mark) {
  std::vector<std::shared_ptr<Segment>> doomed;
  {
    std::lock_guard<std::mutex> l(mu_);
    durable_entries_ -= index_.EraseBelow(mark);
    for (auto it = segments_.begin(); it != segments_.end();) {
      const Segment& s = *it->second;
      if (s.closed && (s.min_address == IndexEntry::kEmpty || s.max_address < mark)) {
        doomed.push_back(it->second);
        it = segments_.erase(it);
      } else {
        ++it;
      }
    }
  }
  {
    std::lock_guard<std::mutex> l(bitmap_mu_);
    written_ = KeepFrom(written_, mark);
    for (auto it = streams_.begin(); it != streams_.end();) {
      it->second = KeepFrom(it->second, mark);
      it = it->second.isEmpty() ? streams_.erase(it) : std::next(it);
    }
  }
  if (doomed.empty()) return Status::OK();
  std::vector<uint32_t> ids;
  for (const auto& s : doomed) {
    ids.push_back(s->id);
    Status st = fs_->Remove(s->path);
    if (!st.ok() && st.code() != Code::kNotFound) return st.WithContext("trim");
  }
  TALLY_RETURN_IF_ERROR(meta_->DeleteSegmentIndexes(ids));
  spdlog::info("trim at {}: deleted {} segment file(s) in {}", mark, doomed.size(), options_.dir);
  return fs_->SyncDir(options_.dir);
}

StoreStats SegmentStoreImpl::Stats() {
  StoreStats s;
  {
    std::lock_guard<std::mutex> l(mu_);
    s.entries = durable_entries_;
    s.trim_mark = trim_mark_;
    s.segments = segments_.size();
    for (const auto& [id, seg] : segments_) s.bytes += seg->size;
  }
  {
    std::lock_guard<std::mutex> l(commit_mu_);
    s.commit = commit_;
  }
  s.uptime_ms =
      static_cast<uint64_t>(std::max<int64_t>(0, clock_->NowNanos() - opened_nanos_)) / 1'000'000;
  std::lock_guard<std::mutex> l(bitmap_mu_);
  s.local_tail = tail_;
  return s;
}

void CommitLatency::Add(uint64_t micros, uint64_t group_records, uint64_t group_bytes) {
  ++commits;
  records += group_records;
  bytes += group_bytes;
  sum_us += micros;
  max_us = std::max(max_us, micros);
  size_t i = 0;
  while (micros > kBucketLeUs[i]) ++i;  // the last bound is UINT64_MAX
  ++buckets[i];
}

}  // namespace tally::log
