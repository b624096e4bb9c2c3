#include "metadata_store.h"

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <cstring>

namespace tally::log {

namespace {

constexpr std::string_view kFormatKey = "meta/format";
constexpr std::string_view kSealedEpochKey = "meta/sealed_epoch";
constexpr std::string_view kTrimMarkKey = "meta/trim_mark";
constexpr std::string_view kWipeKey = "meta/wipe";
constexpr std::string_view kSegmentPrefix = "seg/";
constexpr std::string_view kPartPrefix = "segpart/";
// Just past every segpart/ key ('0' follows '/').
constexpr std::string_view kPartPrefixEnd = "segpart0";
constexpr uint32_t kMetadataFormat = 1;

std::string SegmentKey(uint32_t id) { return fmt::format("seg/{:020}", id); }
// The prefix of segment `id`'s part keys, and the key just past them.
std::string PartPrefix(uint32_t id) { return fmt::format("segpart/{:020}/", id); }
std::string PartPrefixEnd(uint32_t id) { return fmt::format("segpart/{:020}0", id); }
std::string PartKey(uint32_t id, uint32_t number) {
  return fmt::format("segpart/{:020}/{:010}", id, number);
}

// The id in a seg/<20 digits> or segpart/<20 digits>/... key after `prefix`.
uint32_t IdAfter(std::string_view key, std::string_view prefix) {
  uint64_t id = 0;
  for (char c : key.substr(prefix.size(), 20)) id = id * 10 + static_cast<uint64_t>(c - '0');
  return static_cast<uint32_t>(id);
}

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  if (s.IsCorruption()) return Corruption(fmt::format("metadata {}: {}", what, s.ToString()));
  return IoError(fmt::format("metadata {}: {}", what, s.ToString()));
}

}  // namespace

MetadataStore::MetadataStore(std::unique_ptr<rocksdb::DB> db) : db_(std::move(db)) {}

MetadataStore::~MetadataStore() {
  if (db_) (void)db_->Close();
}

Result<std::unique_ptr<MetadataStore>> MetadataStore::Open(const std::string& path,
                                                           rocksdb::Env* env) {
  rocksdb::Options options;
  options.create_if_missing = true;
  options.keep_log_file_num = 4;
  if (env != nullptr) options.env = env;
  rocksdb::DB* raw = nullptr;
  TALLY_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(options, path, &raw), "open " + path));
  std::unique_ptr<MetadataStore> store(new MetadataStore(std::unique_ptr<rocksdb::DB>(raw)));

  // Leaves *out unchanged (and *found false) when the key is absent.
  auto get_u64 = [&](std::string_view key, uint64_t* out, bool* found = nullptr) -> Status {
    if (found != nullptr) *found = false;
    std::string v;
    rocksdb::Status s = store->db_->Get(rocksdb::ReadOptions(), key, &v);
    if (s.IsNotFound()) return Status::OK();
    TALLY_RETURN_IF_ERROR(FromRocks(s, fmt::format("read {}", key)));
    if (v.size() != 8) {
      return Corruption(fmt::format("metadata key {} holds {} bytes, expected 8", key, v.size()));
    }
    std::memcpy(out, v.data(), 8);
    if (found != nullptr) *found = true;
    return Status::OK();
  };
  uint64_t format = 0;
  TALLY_RETURN_IF_ERROR(get_u64(kFormatKey, &format));
  if (format == 0) {
    TALLY_RETURN_IF_ERROR(store->PutU64(kFormatKey, kMetadataFormat));
  } else if (format != kMetadataFormat) {
    return Corruption(fmt::format("metadata at {} has format {}, this build reads format {}", path,
                                  format, kMetadataFormat));
  }
  TALLY_RETURN_IF_ERROR(get_u64(kSealedEpochKey, &store->sealed_epoch_));
  TALLY_RETURN_IF_ERROR(get_u64(kTrimMarkKey, &store->trim_mark_));
  TALLY_RETURN_IF_ERROR(get_u64(kWipeKey, &store->wipe_epoch_, &store->wipe_pending_));
  return store;
}

Status MetadataStore::PutU64(std::string_view key, uint64_t value) {
  char b[8];
  std::memcpy(b, &value, 8);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocks(db_->Put(wo, key, rocksdb::Slice(b, 8)), fmt::format("write {}", key));
}

Status MetadataStore::PutSealedEpoch(uint64_t epoch) {
  TALLY_RETURN_IF_ERROR(PutU64(kSealedEpochKey, epoch));
  sealed_epoch_ = epoch;
  return Status::OK();
}

Status MetadataStore::PutTrimMark(uint64_t mark) {
  TALLY_RETURN_IF_ERROR(PutU64(kTrimMarkKey, mark));
  trim_mark_ = mark;
  return Status::OK();
}

Status MetadataStore::BeginWipe(uint64_t epoch) {
  const uint64_t sealed = std::max(sealed_epoch_, epoch);
  char b[8];
  rocksdb::WriteBatch batch;
  std::memcpy(b, &epoch, 8);
  batch.Put(kWipeKey, rocksdb::Slice(b, 8));
  // In the marker's batch: once the wipe is bound to happen (the marker is
  // durable), so is the epoch it fences older writers with.
  std::memcpy(b, &sealed, 8);
  batch.Put(kSealedEpochKey, rocksdb::Slice(b, 8));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  TALLY_RETURN_IF_ERROR(FromRocks(db_->Write(wo, &batch), fmt::format("write {}", kWipeKey)));
  sealed_epoch_ = sealed;
  wipe_pending_ = true;
  wipe_epoch_ = epoch;
  return Status::OK();
}

Status MetadataStore::FinishWipe() {
  TALLY_ASSIGN_OR_RETURN(std::vector<uint32_t> ids, ListSegmentIndexes());
  // One batch: the indexes, the trim mark and the marker go together, so a
  // crash leaves either all of them (and the wipe is redone) or none.
  rocksdb::WriteBatch batch;
  for (uint32_t id : ids) batch.Delete(SegmentKey(id));
  batch.DeleteRange(kPartPrefix, kPartPrefixEnd);
  batch.Delete(kTrimMarkKey);
  batch.Delete(kWipeKey);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  TALLY_RETURN_IF_ERROR(
      FromRocks(db_->Write(wo, &batch), fmt::format("clear segment indexes and {}", kWipeKey)));
  trim_mark_ = 0;
  wipe_pending_ = false;
  wipe_epoch_ = 0;
  return Status::OK();
}

Status MetadataStore::PutIndexPart(uint32_t segment_id, uint32_t number, const std::string& blob) {
  const std::string key = PartKey(segment_id, number);
  return FromRocks(db_->Put(rocksdb::WriteOptions(), key, blob), "write " + key);
}

Status MetadataStore::PutSegmentIndex(uint32_t segment_id, const std::string& close,
                                      std::span<const std::pair<uint32_t, std::string>> parts) {
  rocksdb::WriteBatch batch;
  for (const auto& [number, blob] : parts) batch.Put(PartKey(segment_id, number), blob);
  batch.Put(SegmentKey(segment_id), close);
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "write " + SegmentKey(segment_id));
}

Result<std::vector<uint32_t>> MetadataStore::ListSegmentIndexes() {
  std::vector<uint32_t> ids;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kSegmentPrefix); it->Valid() && it->key().starts_with(kSegmentPrefix); it->Next()) {
    ids.push_back(IdAfter(it->key().ToStringView(), kSegmentPrefix));
  }
  // Part keys sort by segment id: skip to the next segment's after each.
  for (it->Seek(kPartPrefix); it->Valid() && it->key().starts_with(kPartPrefix);
       it->Seek(PartPrefixEnd(ids.back()))) {
    ids.push_back(IdAfter(it->key().ToStringView(), kPartPrefix));
  }
  TALLY_RETURN_IF_ERROR(FromRocks(it->status(), "list segment indexes"));
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

Status MetadataStore::LoadSegmentIndex(uint32_t segment_id, SegmentIndexData* out) {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), SegmentKey(segment_id), &value);
  if (s.IsNotFound()) return NotFound("no stored index for segment " + std::to_string(segment_id));
  TALLY_RETURN_IF_ERROR(FromRocks(s, "read " + SegmentKey(segment_id)));
  SegmentIndexClose close;
  bool has_parts = false;
  TALLY_RETURN_IF_ERROR(DecodeSegmentIndex(value, out, &close, &has_parts));
  if (!has_parts) return Status::OK();
  if (close.segment_id != segment_id) {
    return Corruption(fmt::format("the stored index of segment {} names segment {}", segment_id,
                                  close.segment_id));
  }
  out->segment_id = segment_id;
  out->file_size = close.file_size;
  out->entries.clear();
  out->entries.reserve(close.entries);
  out->streams.clear();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  it->Seek(PartKey(segment_id, 0));
  for (uint32_t n = 0; n < close.parts; ++n, it->Next()) {
    if (!it->Valid() || it->key().ToStringView() != PartKey(segment_id, n)) {
      TALLY_RETURN_IF_ERROR(FromRocks(it->status(), "read " + PartKey(segment_id, n)));
      return Corruption(fmt::format("part {} of the {}-part index of segment {} is missing", n,
                                    close.parts, segment_id));
    }
    TALLY_RETURN_IF_ERROR(DecodeIndexPart(it->value().ToStringView(), close, n, out));
  }
  if (out->entries.size() != close.entries) {
    return Corruption(
        fmt::format("the {} parts of the index of segment {} hold {} entries, its "
                    "closing record says {}",
                    close.parts, segment_id, out->entries.size(), close.entries));
  }
  return Status::OK();
}

Status MetadataStore::DeleteSegmentIndexes(const std::vector<uint32_t>& segment_ids) {
  if (segment_ids.empty()) return Status::OK();
  rocksdb::WriteBatch batch;
  for (uint32_t id : segment_ids) {
    batch.Delete(SegmentKey(id));
    batch.DeleteRange(PartPrefix(id), PartPrefixEnd(id));
  }
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "delete segment indexes");
}

}  // namespace tally::log
