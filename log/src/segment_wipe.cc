// SegmentStore::Wipe: forget every entry, crash-safely (docs/log-unit.md,
// "Reset"). The steps, and what a crash (power cut) after each leaves:
//   1. quiesce: refuse new appends, wait for the admitted ones and for the
//      indexer, so that nothing writes segment files or indexes any more;
//   2. MetadataStore::BeginWipe: the marker and the raised sealed epoch in
//      one synced RocksDB write. Crash before it is durable: the old store,
//      intact. Crash after: Open finishes the wipe before recovery;
//   3. forget everything in memory (reads answer Unwritten from here on);
//   4. delete every segment file, then sync the directory;
//   5. MetadataStore::FinishWipe: the segment indexes, the trim mark and the
//      marker go in one synced batch. Crash before it: the marker is still
//      there, so Open redoes 4 and 5 (deleting what is left). After it: an
//      empty store;
//   6. create a fresh segment 1 and admit appends again.
// So no reopen ever sees part of the old entries: the marker is durable
// before the first deletion and goes only after the last one is durable.

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "segment_store_impl.h"

namespace tally::log {

Result<StoreStats> SegmentStoreImpl::Wipe(Epoch epoch) {
  // With inline_writes every Append admits and commits under inline_mu_, so
  // holding it keeps them all out; the writer thread is quiesced below.
  std::unique_lock<std::mutex> inline_lock(inline_mu_, std::defer_lock);
  if (options_.inline_writes) inline_lock.lock();
  std::lock_guard<std::mutex> trim_lock(trim_mu_);
  std::lock_guard<std::mutex> seal_lock(seal_mu_);
  {
    std::lock_guard<std::mutex> l(mu_);
    wiping_ = true;
  }
  // Every append admitted before wiping_ is written (or failed) and
  // answered; later ones are refused and never touch a file.
  Flush();
  // Segments those appends rolled: their indexes must be stored before we
  // delete the indexes, never after.
  WaitForRolledSegments();

  Status st = meta_->BeginWipe(epoch.value());
  sealed_epoch_.store(meta_->sealed_epoch());
  if (!st.ok()) {
    // The marker may or may not have reached the disk, so the next open may
    // or may not finish the wipe: a write acknowledged now could vanish
    // then. Refuse writes until the reopen settles it.
    std::lock_guard<std::mutex> l(mu_);
    wiping_ = false;
    if (broken_.ok()) {
      broken_ = IoError(
          fmt::format("a wipe could not record its start ({}); reopen the store", st.message()));
    }
    return IoError(fmt::format(
        "wipe of {} not started: recording the wipe marker failed ({}); nothing was deleted, "
        "the store refuses writes until it is reopened",
        options_.dir, st.message()));
  }

  st = WipeMarked();
  {
    std::lock_guard<std::mutex> l(mu_);
    wiping_ = false;
    if (!st.ok()) {
      // Empty in memory, as the next open will be once it finishes the
      // wipe; a write accepted now would be wiped by that open.
      broken_ = IoError(fmt::format("a wipe did not finish ({}); reopen the store or wipe it again",
                                    st.message()));
    } else {
      // The files a failed sync may have left unacknowledged bytes in are
      // gone, and the new segment is synced: nothing is left to distrust.
      broken_ = Status::OK();
    }
  }
  if (!st.ok()) {
    spdlog::error("log store {}: wipe did not finish: {}; refusing writes until reopened",
                  options_.dir, st.ToString());
    return IoError(fmt::format(
        "wipe of {} did not finish: {}; the store is empty and refuses writes until it is "
        "reopened (which finishes the wipe) or wiped again",
        options_.dir, st.message()));
  }
  return Stats();
}

Status SegmentStoreImpl::WipeMarked() {
  std::vector<std::shared_ptr<Segment>> old;
  {
    std::lock_guard<std::mutex> l(mu_);
    // Nothing is pending (the store is quiesced), so this empties the index
    // and shrinks it back to its initial size.
    index_.EraseBelow(IndexEntry::kEmpty);
    for (auto& [id, seg] : segments_) old.push_back(std::move(seg));
    segments_.clear();
    durable_entries_ = 0;
    trim_mark_ = 0;
  }
  {
    std::lock_guard<std::mutex> l(bitmap_mu_);
    written_.clear();
    streams_.clear();
    tail_ = 0;
  }
  // The writer's state is ours while it is quiesced: it touches open_ only
  // for a group with accepted records, and every record is refused until
  // wiping_ is cleared under mu_ (which publishes these writes to it).
  open_.reset();
  open_index_ = SegmentIndexBuilder{};
  // No more zeros or next segment after the old open segment (the indexer
  // does either only while zero_seg_ is set). A prepared next segment is
  // forgotten here; its file goes with the others in EraseSegmentData.
  {
    std::unique_lock<std::mutex> l(rolled_mu_);
    rolled_cv_.wait(l, [&] { return !next_creating_ && zero_busy_seg_ == nullptr; });
    zero_seg_ = nullptr;
    next_seg_ = nullptr;
    next_zero_end_ = 0;
    next_failed_id_ = 0;
  }
  old.clear();  // closes the files (a racing Read may hold one a moment longer)
  TALLY_RETURN_IF_ERROR(EraseSegmentData());
  std::shared_ptr<Segment> seg;
  TALLY_RETURN_IF_ERROR(CreateSegment(1, &seg).WithContext("wiped, but creating segment 1"));
  open_ = seg;
  open_index_ = SegmentIndexBuilder(seg->id);
  std::lock_guard<std::mutex> l(mu_);
  segments_[seg->id] = std::move(seg);
  return Status::OK();
}

Status SegmentStoreImpl::EraseSegmentData() {
  auto names = fs_->ListDir(options_.dir);
  if (!names.ok()) return names.status().WithContext("wipe: listing the segment files");
  std::sort(names->begin(), names->end());
  size_t removed = 0;
  for (const std::string& name : *names) {
    uint64_t id = 0;
    if (!ParseSegmentFileName(name, &id)) continue;
    Status st = fs_->Remove(JoinPath(options_.dir, name));
    if (!st.ok() && st.code() != Code::kNotFound) return st.WithContext("wipe: deleting " + name);
    ++removed;
  }
  // The deletions must be durable before the marker goes: one undone by a
  // power cut after that would bring old entries back with no marker left
  // to delete them again.
  TALLY_RETURN_IF_ERROR(fs_->SyncDir(options_.dir).WithContext("wipe: syncing the directory"));
  TALLY_RETURN_IF_ERROR(meta_->FinishWipe().WithContext("wipe"));
  spdlog::info("log store {}: wiped: deleted {} segment file(s) and their indexes", options_.dir,
               removed);
  return Status::OK();
}

}  // namespace tally::log
