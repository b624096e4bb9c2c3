#pragma once

// Private: the log unit's metadata in RocksDB (docs/log-format.md):
//
//   key                      value
//   meta/format              u32 metadata format version (1)
//   meta/sealed_epoch        u64 (written with sync)
//   meta/trim_mark           u64 (written with sync)
//   meta/wipe                u64: a wipe (at that epoch) is in progress; see
//                            SegmentStore::Wipe (written with sync)
//   seg/<20-digit id>        the index of a closed segment (SegmentIndexData)
//
// Integers are little-endian. Thread-safe (RocksDB is).

#include <cstdint>
#include <memory>
#include <roaring/roaring64map.hh>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "address_index.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"

namespace rocksdb {
class DB;
class Env;
}  // namespace rocksdb

namespace tally::log {

// Everything needed to serve a closed segment without scanning it.
struct SegmentIndexData {
  uint32_t segment_id = 0;
  uint64_t file_size = 0;           // bytes of the file when it was closed
  std::vector<IndexEntry> entries;  // durable and corrupt records, file order
  std::vector<std::pair<StreamId, Roaring64Map>> streams;
};

// Serializes `data` (checksummed; see docs/log-format.md).
std::string EncodeSegmentIndex(const SegmentIndexData& data);
// Errors: Corruption if the bytes are damaged or of an unknown version.
Status DecodeSegmentIndex(std::string_view bytes, SegmentIndexData* out);

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

  // Not synced: a lost segment index only means that segment is scanned at
  // the next start. Errors: IoError.
  Status PutSegmentIndex(uint32_t segment_id, const std::string& blob);
  // Segment ids that have a stored index, ascending. Errors: IoError.
  Result<std::vector<uint32_t>> ListSegmentIndexes();
  // Errors: NotFound, IoError.
  Result<std::string> GetSegmentIndex(uint32_t segment_id);
  // Errors: IoError.
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
