// Recovery at open: closed segments come back from their stored index in
// RocksDB; segments without one (normally only the one that was open) are
// scanned record by record. A damaged record followed by nothing valid is a
// torn tail and is truncated away; one followed by valid records is corrupt:
// counted, its address (when it can be trusted) marked so that it is never
// served and never rewritten.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "record_format.h"
#include "segment_store_impl.h"

namespace tally::log {

bool ParseSegmentFileName(const std::string& name, uint64_t* id) {
  constexpr size_t kDigits = 20;
  if (name.size() != 4 + kDigits + 4 || name.compare(0, 4, "seg-") != 0 ||
      name.compare(4 + kDigits, 4, ".log") != 0) {
    return false;
  }
  uint64_t v = 0;
  for (size_t i = 4; i < 4 + kDigits; ++i) {
    if (name[i] < '0' || name[i] > '9') return false;
    v = v * 10 + static_cast<uint64_t>(name[i] - '0');
  }
  *id = v;
  return true;
}

namespace {

constexpr size_t kNotFound = ~size_t{0};

bool AllZero(std::span<const char> bytes) {
  for (char c : bytes) {
    if (c != 0) return false;
  }
  return true;
}

// Offset of the first record at or after `from` that parses and verifies.
size_t FindNextRecord(std::span<const char> data, size_t from) {
  char magic[4];
  std::memcpy(magic, &format::kMagic, 4);
  while (from < data.size()) {
    const char* base = data.data();
    const char* hit =
        static_cast<const char*>(memmem(base + from, data.size() - from, magic, sizeof(magic)));
    if (hit == nullptr) return kNotFound;
    const size_t pos = static_cast<size_t>(hit - base);
    format::Header h;
    if (format::ParseRecord(data.subspan(pos), &h) == format::ParseResult::kOk) return pos;
    from = pos + 1;
  }
  return kNotFound;
}

}  // namespace

Status SegmentStoreImpl::Recover(RecoveryReport* report) {
  *report = RecoveryReport{};
  // First, so that no entry of a store whose wipe began is ever served.
  if (meta_->wipe_pending()) {
    spdlog::warn("log store {}: a wipe (log.reset at epoch {}) was interrupted; finishing it",
                 options_.dir, meta_->wipe_epoch());
    TALLY_RETURN_IF_ERROR(EraseSegmentData());
  }
  trim_mark_ = meta_->trim_mark();
  sealed_epoch_.store(meta_->sealed_epoch());

  TALLY_ASSIGN_OR_RETURN(std::vector<std::string> names, fs_->ListDir(options_.dir));
  std::vector<uint32_t> ids;
  for (const std::string& name : names) {
    uint64_t id = 0;
    if (!ParseSegmentFileName(name, &id)) continue;
    if (id == 0 || id > UINT32_MAX) {
      return Corruption(fmt::format("segment file {} in {} has an id outside 1..{}", name,
                                    options_.dir, UINT32_MAX));
    }
    ids.push_back(static_cast<uint32_t>(id));
  }
  std::sort(ids.begin(), ids.end());

  TALLY_ASSIGN_OR_RETURN(std::vector<uint32_t> indexed, meta_->ListSegmentIndexes());
  std::vector<uint32_t> stale;
  for (uint32_t id : indexed) {
    if (!std::binary_search(ids.begin(), ids.end(), id)) stale.push_back(id);
  }
  if (!stale.empty()) {
    Status st = meta_->DeleteSegmentIndexes(stale);
    if (!st.ok()) spdlog::warn("log store {}: {}", options_.dir, st.ToString());
  }
  const std::set<uint32_t> has_index(indexed.begin(), indexed.end());

  for (size_t k = 0; k < ids.size(); ++k) {
    auto seg = std::make_shared<Segment>();
    seg->id = ids[k];
    seg->path = JoinPath(options_.dir, SegmentFileName(ids[k]));
    TALLY_ASSIGN_OR_RETURN(seg->file, fs_->Open(seg->path, OpenOptions{}));
    TALLY_ASSIGN_OR_RETURN(seg->size, seg->file->Size());
    const bool is_last = k + 1 == ids.size();
    bool loaded = false;
    if (has_index.count(seg->id) != 0) {
      SegmentIndexData data;
      Status st = meta_->LoadSegmentIndex(seg->id, &data);
      if (st.ok() && (data.segment_id != seg->id || data.file_size != seg->size)) {
        st = Corruption(fmt::format("stored index describes {} bytes, the file has {}",
                                    data.file_size, seg->size));
      }
      if (st.ok()) {
        for (const IndexEntry& e : data.entries) AddRecovered(seg.get(), e);
        for (auto& [stream, bm] : data.streams) streams_[stream] |= bm;
        seg->closed = true;
        loaded = true;
      } else if (st.code() != Code::kNotFound) {
        // NotFound: parts only, of the segment that was open.
        spdlog::warn("log store {}: segment {}: {}; scanning it instead", options_.dir, seg->id,
                     st.ToString());
      }
    }
    if (!loaded) {
      // What was stored (parts of the segment that was open, or a damaged
      // index) is rebuilt from the scan.
      if (has_index.count(seg->id) != 0) {
        Status st = meta_->DeleteSegmentIndexes({seg->id});
        if (!st.ok()) spdlog::warn("log store {}: {}", options_.dir, st.ToString());
      }
      SegmentIndexBuilder idx(seg->id);
      TALLY_RETURN_IF_ERROR(ScanSegment(seg.get(), report, &idx));
      if (is_last && seg->size < options_.segment_bytes) {
        TALLY_ASSIGN_OR_RETURN(const uint64_t physical, seg->file->Size());
        open_index_ = std::move(idx);
        open_ = seg;
        OpenZeroFile(seg.get());
        std::lock_guard<std::mutex> l(rolled_mu_);
        zero_seg_ = seg;
        zero_end_ = physical;  // [seg->size, physical) is all zeros
        writer_end_ = seg->size;
      } else {
        // A zero tail goes: the stored index states the file's exact size.
        TALLY_RETURN_IF_ERROR(CutZeroTail(seg.get(), seg->size));
        Status st = PersistSegmentIndex(seg->size, std::move(idx));
        if (!st.ok()) spdlog::warn("log store {}: {}", options_.dir, st.ToString());
        seg->closed = true;
      }
    }
    segments_[seg->id] = seg;
  }

  if (open_ == nullptr) {
    std::shared_ptr<Segment> seg;
    TALLY_RETURN_IF_ERROR(CreateSegment(ids.empty() ? 1 : ids.back() + 1, &seg));
    segments_[seg->id] = seg;
    open_ = seg;
    open_index_ = SegmentIndexBuilder(seg->id);
  }
  // A trim that crashed between persisting its mark and deleting files.
  if (trim_mark_ > 0) TALLY_RETURN_IF_ERROR(DropBelow(trim_mark_));

  report->segments = segments_.size();
  report->records = durable_entries_;
  if (report->torn_bytes_dropped > 0 || report->corrupt_records > 0) {
    spdlog::warn(
        "log store {}: recovered {} records in {} segments; dropped a torn tail of {} "
        "bytes; {} corrupt records will not be served",
        options_.dir, report->records, report->segments, report->torn_bytes_dropped,
        report->corrupt_records);
  }
  return Status::OK();
}

void SegmentStoreImpl::AddRecovered(Segment* seg, const IndexEntry& e) {
  seg->Cover(e.address);
  tail_ = std::max(tail_, e.address + 1);
  if (e.address < trim_mark_) return;
  if (index_.Find(e.address) != nullptr) {
    spdlog::warn(
        "log store {}: address {} appears again in segment {} at offset {}; keeping the "
        "first copy",
        options_.dir, e.address, seg->id, e.offset);
    return;
  }
  *index_.Insert(e.address) = e;
  ++durable_entries_;
  written_.add(e.address);
}

Status SegmentStoreImpl::ScanSegment(Segment* seg, RecoveryReport* report,
                                     SegmentIndexBuilder* index) {
  auto add = [&](const IndexEntry& e) {
    AddRecovered(seg, e);
    index->Add(e);
  };
  std::string data(seg->size, '\0');
  TALLY_ASSIGN_OR_RETURN(size_t n, seg->file->Read(0, std::span<char>(data)));
  data.resize(n);
  const std::span<const char> bytes(data);
  size_t off = 0;
  while (off < bytes.size()) {
    format::Header h;
    const std::span<const char> rest = bytes.subspan(off);
    const format::ParseResult r = format::ParseRecord(rest, &h);
    if (r == format::ParseResult::kOk) {
      IndexEntry e;
      e.address = h.address;
      e.epoch = h.epoch;
      e.offset = off;
      e.segment = seg->id;
      e.Set(EntryState::kDurable, static_cast<uint32_t>(h.total_size()));
      add(e);
      const char* p = rest.data() + format::kHeaderSize;
      for (uint16_t i = 0; i < h.nstreams; ++i, p += format::kStreamIdSize) {
        StreamId s;
        std::memcpy(&s.hi, p, 8);
        std::memcpy(&s.lo, p + 8, 8);
        streams_[s].add(h.address);
        index->AddStream(s, h.address);
      }
      if (index->part_entries() >= options_.index_part_entries) {
        StoreIndexPart(index->TakePart());
      }
      ++report->scanned_records;
      off += h.total_size();
      continue;
    }
    // Zeros to the end: written ahead by zero-ahead (segment_writer.cc) and
    // never overwritten; the segment's clean end, not a torn tail.
    if (AllZero(rest)) {
      report->zero_tail_bytes += rest.size();
      break;
    }
    // Damaged bytes at `off`. Is anything valid after them?
    const bool header_ok = r != format::ParseResult::kBadHeader;
    size_t next = kNotFound;
    if (header_ok && h.total_size() < rest.size()) {
      format::Header nh;
      if (format::ParseRecord(rest.subspan(h.total_size()), &nh) == format::ParseResult::kOk) {
        next = off + h.total_size();
      }
    }
    if (next == kNotFound) next = FindNextRecord(bytes, off + 1);
    if (next == kNotFound) {
      // Torn tail: a write that never completed (or was never synced).
      const uint64_t dropped = bytes.size() - off;
      spdlog::warn("log store {}: {} ends with a torn record at offset {}; dropping {} bytes",
                   options_.dir, seg->path, off, dropped);
      TALLY_RETURN_IF_ERROR(seg->file->Truncate(off));
      TALLY_RETURN_IF_ERROR(seg->file->Sync());
      report->torn_bytes_dropped += dropped;
      break;
    }
    ++report->corrupt_records;
    // The address is trustworthy if the header verified, or if the body
    // checksum (seeded with the address) confirms the unverified header and
    // the record ends exactly where the next valid one starts.
    const bool address_known =
        header_ok || (off + h.total_size() == next && format::BodyConfirmsHeader(rest, h));
    if (address_known) {
      IndexEntry e;
      e.address = h.address;
      e.epoch = h.epoch;
      e.offset = off;
      e.segment = seg->id;
      e.Set(EntryState::kCorrupt,
            static_cast<uint32_t>(std::min<uint64_t>(next - off, AddressIndex::kMaxLength)));
      add(e);
      spdlog::error(
          "log store {}: record for address {} in {} at offset {} failed its checksum; "
          "it will not be served",
          options_.dir, h.address, seg->path, off);
    } else {
      spdlog::error(
          "log store {}: {} bytes at offset {} of {} are damaged and name no "
          "trustworthy address; a record there is lost",
          options_.dir, next - off, off, seg->path);
    }
    off = next;
  }
  seg->size = std::min<uint64_t>(off, bytes.size());
  return Status::OK();
}

}  // namespace tally::log
