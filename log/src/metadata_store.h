#pragma once

// Private: the log unit's metadata in RocksDB (docs/log-format.md):
//
//   key                      value
//   meta/format              u32 metadata format version (1)
//   meta/sealed_epoch        u64 (written with sync)
//   meta/trim_mark           u64 (written with sync)
//   meta/wipe                u64: a wipe (at that epoch) is in progress; see
//                            SegmentStore::Wipe (written with sync)
//   seg/<20-digit id>        a closed segment's index: its closing record,
//                            or (stores before 2026-11-25) the whole index
//   segpart/<20-digit id>/<10-digit n>
//                            part n of a segment's index (segment_index.h)
//
// Integers are little-endian. Thread-safe (RocksDB is).

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "segment_index.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"

namespace rocksdb {
class DB;
class Env;
}  // namespace rocksdb

namespace tally::log {

class MetadataStore {
 public:
  // Opens or creates the RocksDB database at `path`. `env` may be nullptr
  // (rocksdb::Env::Default()). Errors: IoError, Corruption.
  static Result<std::unique_ptr<MetadataStore>> Open(const std::string& path, rocksdb::Env* env);
  ~MetadataStore();

  uint64_t sealed_epoch() const { return sealed_epoch_; }
  uint64_t trim_mark() const { return trim_mark_; }
  // True while a wipe is recorded as begun and not finished.
  bool wipe_pending() const { return wipe_pending_; }
  uint64_t wipe_epoch() const { return wipe_epoch_; }

  // Durable (synced) before returning. Callers serialize these. Errors: IoError.
  Status PutSealedEpoch(uint64_t epoch);
  Status PutTrimMark(uint64_t mark);

  // A wipe in two atomic, synced steps (SegmentStore::Wipe). BeginWipe
  // records the marker and raises the sealed epoch to `epoch` if below it;
  // FinishWipe deletes every segment index, the trim mark and the marker in
  // one batch. The caller deletes the segment files, durably, in between.
  // Errors: IoError.
  Status BeginWipe(uint64_t epoch);
  Status FinishWipe();

  // Segment indexes are not synced: a lost one only means that segment is
  // scanned at the next start. Errors: IoError.
  //
  // Part `number` of segment `segment_id`'s index, stored while it fills.
  Status PutIndexPart(uint32_t segment_id, uint32_t number, const std::string& blob);
  // The closing record and the parts not yet stored, in one batch.
  Status PutSegmentIndex(uint32_t segment_id, const std::string& close,
                         std::span<const std::pair<uint32_t, std::string>> parts);
  // Segment ids with anything stored (a closing record or parts), ascending.
  Result<std::vector<uint32_t>> ListSegmentIndexes();
  // The stored index of a closed segment, its parts checked against the
  // closing record. Errors: NotFound (none stored, or only parts: the
  // segment was never closed), Corruption (damaged or incomplete), IoError.
  Status LoadSegmentIndex(uint32_t segment_id, SegmentIndexData* out);
  // Deletes each segment's closing record and parts. Errors: IoError.
  Status DeleteSegmentIndexes(const std::vector<uint32_t>& segment_ids);

 private:
  explicit MetadataStore(std::unique_ptr<rocksdb::DB> db);
  Status PutU64(std::string_view key, uint64_t value);

  std::unique_ptr<rocksdb::DB> db_;
  uint64_t sealed_epoch_ = 0;
  uint64_t trim_mark_ = 0;
  bool wipe_pending_ = false;
  uint64_t wipe_epoch_ = 0;
};

}  // namespace tally::log
