#include "metadata_store.h"

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <exception>

#include "tally/base/address_map.h"

namespace tally::log {

namespace {

constexpr std::string_view kFormatKey = "meta/format";
constexpr std::string_view kSealedEpochKey = "meta/sealed_epoch";
constexpr std::string_view kTrimMarkKey = "meta/trim_mark";
constexpr std::string_view kWipeKey = "meta/wipe";
constexpr std::string_view kSegmentPrefix = "seg/";
constexpr uint32_t kMetadataFormat = 1;
// Segment index versions (docs/log-format.md). TSI2 is written; TSI1 (fixed
// 28-byte entries, 7x larger) is still read.
constexpr uint32_t kSegmentIndexMagicV1 = 0x31495354;  // "TSI1"
constexpr uint32_t kSegmentIndexMagic = 0x32495354;    // "TSI2"
constexpr size_t kEntryBytesV1 = 8 + 8 + 8 + 4;
// At most, per TSI2 entry: three zigzag varint64 deltas and a varint32.
constexpr size_t kMaxEntryBytes = 10 + 10 + 10 + 5;
constexpr size_t kChunk = 1024;  // entries encoded per resize of the output

std::string SegmentKey(uint32_t id) { return fmt::format("seg/{:020}", id); }

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  if (s.IsCorruption()) return Corruption(fmt::format("metadata {}: {}", what, s.ToString()));
  return IoError(fmt::format("metadata {}: {}", what, s.ToString()));
}

class Writer {
 public:
  template <typename T>
  void Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  void PutBytes(const char* p, size_t n) { out_.append(p, n); }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  template <typename T>
  bool Get(T* v) {
    if (in_.size() < sizeof(T)) return false;
    std::memcpy(v, in_.data(), sizeof(T));
    in_.remove_prefix(sizeof(T));
    return true;
  }
  bool Take(size_t n, std::string_view* out) {
    if (in_.size() < n) return false;
    *out = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  size_t remaining() const { return in_.size(); }
  std::string_view rest() const { return in_; }

 private:
  std::string_view in_;
};

uint64_t ZigZag(int64_t v) {
  return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63);
}
int64_t UnZigZag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

char* PutVarint(uint64_t v, char* p) {
  while (v >= 0x80) {
    *p++ = static_cast<char>(v | 0x80);
    v >>= 7;
  }
  *p++ = static_cast<char>(v);
  return p;
}

// Decodes a varint of at most `max_bytes` from [*p, end); false if it is
// cut short or longer.
bool GetVarint(const char** p, const char* end, uint64_t* v, int max_bytes = 10) {
  uint64_t out = 0;
  for (int i = 0, shift = 0; i < max_bytes && *p < end; ++i, shift += 7) {
    const auto b = static_cast<uint8_t>(*(*p)++);
    out |= static_cast<uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      *v = out;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string EncodeSegmentIndex(const SegmentIndexData& data) {
  Writer w;
  size_t bitmap_bytes = 0;
  for (const auto& [id, bm] : data.streams) bitmap_bytes += 20 + bm.getSizeInBytes(true);
  w.out().reserve(40 + data.entries.size() * 6 + kChunk * kMaxEntryBytes + bitmap_bytes + 8);
  w.Put<uint32_t>(kSegmentIndexMagic);
  w.Put<uint32_t>(data.segment_id);
  w.Put<uint64_t>(data.file_size);
  w.Put<uint64_t>(data.entries.size());
  // Deltas from the entry before (file order): addresses step by the
  // stripe count, epochs rarely change, and each record starts where the
  // one before ended, so most entries take 4-5 bytes instead of 28.
  std::string& out = w.out();
  uint64_t address = 0, epoch = 0, end = 0;
  for (size_t first = 0; first < data.entries.size(); first += kChunk) {
    const size_t last = std::min(data.entries.size(), first + kChunk);
    const size_t at = out.size();
    out.resize(at + (last - first) * kMaxEntryBytes);
    char* p = out.data() + at;
    for (size_t i = first; i < last; ++i) {
      const IndexEntry& e = data.entries[i];
      p = PutVarint(ZigZag(static_cast<int64_t>(e.address - address)), p);
      p = PutVarint(ZigZag(static_cast<int64_t>(e.epoch - epoch)), p);
      p = PutVarint(ZigZag(static_cast<int64_t>(e.offset - end)), p);
      // State in the low bits so that a short record takes 2 bytes, not 5.
      p = PutVarint((static_cast<uint64_t>(e.length()) << 2) | (e.length_state >> 30), p);
      address = e.address;
      epoch = e.epoch;
      end = e.offset + e.length();
    }
    out.resize(static_cast<size_t>(p - out.data()));
  }
  w.Put<uint32_t>(static_cast<uint32_t>(data.streams.size()));
  std::string blob;
  for (const auto& [id, bm] : data.streams) {
    blob.resize(bm.getSizeInBytes(true));
    bm.write(blob.data(), true);
    w.Put<uint64_t>(id.hi);
    w.Put<uint64_t>(id.lo);
    w.Put<uint32_t>(static_cast<uint32_t>(blob.size()));
    w.PutBytes(blob.data(), blob.size());
  }
  w.Put<uint64_t>(XXH3_64bits(w.out().data(), w.out().size()));
  return std::move(w.out());
}

Status DecodeSegmentIndex(std::string_view bytes, SegmentIndexData* out) {
  auto bad = [&](std::string_view why) {
    return Corruption(fmt::format("segment index ({} bytes) is damaged: {}", bytes.size(), why));
  };
  if (bytes.size() < 8) return bad("too short");
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  std::string_view body = bytes.substr(0, bytes.size() - 8);
  if (XXH3_64bits(body.data(), body.size()) != stored) return bad("checksum mismatch");
  Reader r(body);
  uint32_t magic = 0;
  uint64_t count = 0;
  if (!r.Get(&magic) || (magic != kSegmentIndexMagic && magic != kSegmentIndexMagicV1)) {
    return bad("unknown magic or version");
  }
  if (!r.Get(&out->segment_id) || !r.Get(&out->file_size) || !r.Get(&count)) return bad("header");
  if (magic == kSegmentIndexMagicV1) {
    if (count > r.remaining() / kEntryBytesV1) return bad("entry count exceeds the bytes");
    out->entries.resize(count);
    for (IndexEntry& e : out->entries) {
      (void)(r.Get(&e.address) && r.Get(&e.epoch) && r.Get(&e.offset) && r.Get(&e.length_state));
      e.segment = out->segment_id;
    }
  } else {
    // Every entry takes at least 4 bytes.
    if (count > r.remaining() / 4) return bad("entry count exceeds the bytes");
    out->entries.resize(count);
    const char* p = r.rest().data();
    const char* const end_of_bytes = p + r.remaining();
    uint64_t address = 0, epoch = 0, end = 0;
    for (IndexEntry& e : out->entries) {
      uint64_t da = 0, de = 0, doff = 0, ls = 0;
      if (!GetVarint(&p, end_of_bytes, &da) || !GetVarint(&p, end_of_bytes, &de) ||
          !GetVarint(&p, end_of_bytes, &doff) || !GetVarint(&p, end_of_bytes, &ls, 5) ||
          (ls >> 2) > IndexEntry::kLengthMask) {
        return bad("entry list");
      }
      e.address = address + static_cast<uint64_t>(UnZigZag(da));
      e.epoch = epoch + static_cast<uint64_t>(UnZigZag(de));
      e.offset = end + static_cast<uint64_t>(UnZigZag(doff));
      e.Set(static_cast<EntryState>(ls & 3), static_cast<uint32_t>(ls >> 2));
      e.segment = out->segment_id;
      address = e.address;
      epoch = e.epoch;
      end = e.offset + e.length();
    }
    std::string_view skipped;
    r.Take(static_cast<size_t>(p - r.rest().data()), &skipped);
  }
  uint32_t nstreams = 0;
  if (!r.Get(&nstreams)) return bad("stream count");
  out->streams.clear();
  out->streams.reserve(nstreams);
  for (uint32_t i = 0; i < nstreams; ++i) {
    StreamId id;
    uint32_t len = 0;
    std::string_view blob;
    if (!r.Get(&id.hi) || !r.Get(&id.lo) || !r.Get(&len) || !r.Take(len, &blob)) {
      return bad("stream entry");
    }
    auto map = ParseAddressMap(blob, "stream bitmap");
    if (!map.ok()) return bad(map.status().message());
    out->streams.emplace_back(id, std::move(*map));
  }
  if (r.remaining() != 0) return bad("trailing bytes");
  return Status::OK();
}

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

Status MetadataStore::PutSegmentIndex(uint32_t segment_id, const std::string& blob) {
  return FromRocks(db_->Put(rocksdb::WriteOptions(), SegmentKey(segment_id), blob),
                   "write " + SegmentKey(segment_id));
}

Result<std::vector<uint32_t>> MetadataStore::ListSegmentIndexes() {
  std::vector<uint32_t> ids;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kSegmentPrefix); it->Valid() && it->key().starts_with(kSegmentPrefix); it->Next()) {
    std::string_view digits = it->key().ToStringView().substr(kSegmentPrefix.size());
    uint64_t id = 0;
    for (char c : digits) id = id * 10 + static_cast<uint64_t>(c - '0');
    ids.push_back(static_cast<uint32_t>(id));
  }
  TALLY_RETURN_IF_ERROR(FromRocks(it->status(), "list segment indexes"));
  return ids;
}

Result<std::string> MetadataStore::GetSegmentIndex(uint32_t segment_id) {
  std::string v;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), SegmentKey(segment_id), &v);
  if (s.IsNotFound()) return NotFound("no stored index for segment " + std::to_string(segment_id));
  TALLY_RETURN_IF_ERROR(FromRocks(s, "read " + SegmentKey(segment_id)));
  return v;
}

Status MetadataStore::DeleteSegmentIndexes(const std::vector<uint32_t>& segment_ids) {
  if (segment_ids.empty()) return Status::OK();
  rocksdb::WriteBatch batch;
  for (uint32_t id : segment_ids) batch.Delete(SegmentKey(id));
  return FromRocks(db_->Write(rocksdb::WriteOptions(), &batch), "delete segment indexes");
}

}  // namespace tally::log
