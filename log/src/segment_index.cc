#include "segment_index.h"

#include <fmt/format.h>
#include <xxhash.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <random>

#include "tally/base/address_map.h"

namespace tally::log {

namespace {

// Versions of the seg/<id> value (docs/log-format.md). TSI3 is written;
// TSI2 and TSI1 (fixed 28-byte entries, 7x larger) are still read.
constexpr uint32_t kMagicV1 = 0x31495354;    // "TSI1"
constexpr uint32_t kMagicV2 = 0x32495354;    // "TSI2"
constexpr uint32_t kMagicV3 = 0x33495354;    // "TSI3"
constexpr uint32_t kPartMagic = 0x31505354;  // "TSP1"
constexpr size_t kEntryBytesV1 = 8 + 8 + 8 + 4;
// At most, per entry: three zigzag varint64 deltas and a varint32.
constexpr size_t kMaxEntryBytes = 10 + 10 + 10 + 5;
// Every entry takes at least 4 bytes.
constexpr size_t kMinEntryBytes = 4;

class Writer {
 public:
  template <typename T>
  void Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  void PutBytes(std::string_view bytes) { out_.append(bytes); }
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

// Deltas from the entry before (file order): addresses step by the stripe
// count, epochs rarely change, and each record starts where the one before
// ended, so most entries take 4-5 bytes instead of 28. Writes at most
// kMaxEntryBytes at p; returns the end.
char* EncodeEntry(const IndexEntry& e, uint64_t* address, uint64_t* epoch, uint64_t* end, char* p) {
  p = PutVarint(ZigZag(static_cast<int64_t>(e.address - *address)), p);
  p = PutVarint(ZigZag(static_cast<int64_t>(e.epoch - *epoch)), p);
  p = PutVarint(ZigZag(static_cast<int64_t>(e.offset - *end)), p);
  // State in the low bits so that a short record takes 2 bytes, not 5.
  p = PutVarint((static_cast<uint64_t>(e.length()) << 2) | (e.length_state >> 30), p);
  *address = e.address;
  *epoch = e.epoch;
  *end = e.offset + e.length();
  return p;
}

// Decodes `count` entries of segment `segment_id` from the front of *r and
// appends them to *out. False if they do not parse.
bool DecodeEntries(Reader* r, uint64_t count, uint32_t segment_id, std::vector<IndexEntry>* out) {
  if (count > r->remaining() / kMinEntryBytes) return false;
  const char* p = r->rest().data();
  const char* const end_of_bytes = p + r->remaining();
  uint64_t address = 0, epoch = 0, end = 0;
  out->reserve(out->size() + count);
  for (uint64_t i = 0; i < count; ++i) {
    uint64_t da = 0, de = 0, doff = 0, ls = 0;
    if (!GetVarint(&p, end_of_bytes, &da) || !GetVarint(&p, end_of_bytes, &de) ||
        !GetVarint(&p, end_of_bytes, &doff) || !GetVarint(&p, end_of_bytes, &ls, 5) ||
        (ls >> 2) > IndexEntry::kLengthMask) {
      return false;
    }
    IndexEntry& e = out->emplace_back();
    e.address = address + static_cast<uint64_t>(UnZigZag(da));
    e.epoch = epoch + static_cast<uint64_t>(UnZigZag(de));
    e.offset = end + static_cast<uint64_t>(UnZigZag(doff));
    e.Set(static_cast<EntryState>(ls & 3), static_cast<uint32_t>(ls >> 2));
    e.segment = segment_id;
    address = e.address;
    epoch = e.epoch;
    end = e.offset + e.length();
  }
  std::string_view skipped;
  r->Take(static_cast<size_t>(p - r->rest().data()), &skipped);
  return true;
}

void PutStreams(const std::unordered_map<StreamId, Roaring64Map>& streams, Writer* w) {
  w->Put<uint32_t>(static_cast<uint32_t>(streams.size()));
  std::string blob;
  for (const auto& [id, bm] : streams) {
    blob.resize(bm.getSizeInBytes(true));
    bm.write(blob.data(), true);
    w->Put<uint64_t>(id.hi);
    w->Put<uint64_t>(id.lo);
    w->Put<uint32_t>(static_cast<uint32_t>(blob.size()));
    w->PutBytes(blob);
  }
}

// Empty if the streams parse, else why not.
std::string GetStreams(Reader* r, std::vector<std::pair<StreamId, Roaring64Map>>* out) {
  uint32_t nstreams = 0;
  if (!r->Get(&nstreams)) return "stream count";
  out->reserve(out->size() + nstreams);
  for (uint32_t i = 0; i < nstreams; ++i) {
    StreamId id;
    uint32_t len = 0;
    std::string_view blob;
    if (!r->Get(&id.hi) || !r->Get(&id.lo) || !r->Get(&len) || !r->Take(len, &blob)) {
      return "stream entry";
    }
    auto map = ParseAddressMap(blob, "stream bitmap");
    if (!map.ok()) return std::string(map.status().message());
    out->emplace_back(id, std::move(*map));
  }
  return {};
}

void PutChecksum(Writer* w) { w->Put<uint64_t>(XXH3_64bits(w->out().data(), w->out().size())); }

// The body of `bytes` if its trailing XXH3-64 matches, else false.
bool CheckChecksum(std::string_view bytes, std::string_view* body) {
  if (bytes.size() < 8) return false;
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  *body = bytes.substr(0, bytes.size() - 8);
  return XXH3_64bits(body->data(), body->size()) == stored;
}

uint64_t NewNonce() {
  static std::mutex mu;
  static std::mt19937_64 rng{std::random_device{}()};
  std::lock_guard<std::mutex> l(mu);
  return rng();
}

}  // namespace

SegmentIndexBuilder::SegmentIndexBuilder(uint32_t segment_id) {
  part_.segment_id = segment_id;
  part_.nonce = NewNonce();
}

void SegmentIndexBuilder::Add(const IndexEntry& e) {
  std::string& out = part_.entries;
  const size_t at = out.size();
  // Grows by doubling (resize keeps capacity), so this is amortized O(1).
  out.resize(at + kMaxEntryBytes);
  char* end = EncodeEntry(e, &address_, &epoch_, &end_, out.data() + at);
  out.resize(static_cast<size_t>(end - out.data()));
  ++part_.count;
}

void SegmentIndexBuilder::AddStream(const StreamId& stream, uint64_t address) {
  if (last_map_ == nullptr || last_stream_ != stream) {
    last_stream_ = stream;
    last_map_ = &part_.streams[stream];
  }
  last_map_->add(address);
}

SegmentIndexPart SegmentIndexBuilder::TakePart() {
  SegmentIndexPart next;
  next.segment_id = part_.segment_id;
  next.nonce = part_.nonce;
  next.number = part_.number + 1;
  next.entries.reserve(part_.entries.capacity());
  taken_entries_ += part_.count;
  address_ = epoch_ = end_ = 0;
  last_map_ = nullptr;
  return std::exchange(part_, std::move(next));
}

std::string SegmentIndexBuilder::EncodeClose(uint64_t file_size) const {
  Writer w;
  w.Put<uint32_t>(kMagicV3);
  w.Put<uint32_t>(part_.segment_id);
  w.Put<uint64_t>(file_size);
  w.Put<uint64_t>(taken_entries_);
  w.Put<uint32_t>(part_.number);  // parts taken: the one being built is next
  w.Put<uint64_t>(part_.nonce);
  PutChecksum(&w);
  return std::move(w.out());
}

std::string EncodeIndexPart(SegmentIndexPart& part) {
  Writer w;
  size_t bitmap_bytes = 0;
  for (auto& [id, bm] : part.streams) {
    bm.runOptimize();
    bitmap_bytes += 20 + bm.getSizeInBytes(true);
  }
  w.out().reserve(32 + part.entries.size() + 4 + bitmap_bytes + 8);
  w.Put<uint32_t>(kPartMagic);
  w.Put<uint32_t>(part.segment_id);
  w.Put<uint32_t>(part.number);
  w.Put<uint64_t>(part.nonce);
  w.Put<uint64_t>(part.count);
  w.PutBytes(part.entries);
  PutStreams(part.streams, &w);
  PutChecksum(&w);
  return std::move(w.out());
}

Status DecodeSegmentIndex(std::string_view bytes, SegmentIndexData* data, SegmentIndexClose* close,
                          bool* has_parts) {
  auto bad = [&](std::string_view why) {
    return Corruption(fmt::format("segment index ({} bytes) is damaged: {}", bytes.size(), why));
  };
  *has_parts = false;
  std::string_view body;
  if (!CheckChecksum(bytes, &body))
    return bad(bytes.size() < 8 ? "too short" : "checksum mismatch");
  Reader r(body);
  uint32_t magic = 0;
  if (!r.Get(&magic) || (magic != kMagicV1 && magic != kMagicV2 && magic != kMagicV3)) {
    return bad("unknown magic or version");
  }
  if (magic == kMagicV3) {
    if (!r.Get(&close->segment_id) || !r.Get(&close->file_size) || !r.Get(&close->entries) ||
        !r.Get(&close->parts) || !r.Get(&close->nonce)) {
      return bad("header");
    }
    if (r.remaining() != 0) return bad("trailing bytes");
    *has_parts = true;
    return Status::OK();
  }
  uint64_t count = 0;
  if (!r.Get(&data->segment_id) || !r.Get(&data->file_size) || !r.Get(&count)) return bad("header");
  data->entries.clear();
  if (magic == kMagicV1) {
    if (count > r.remaining() / kEntryBytesV1) return bad("entry count exceeds the bytes");
    data->entries.resize(count);
    for (IndexEntry& e : data->entries) {
      (void)(r.Get(&e.address) && r.Get(&e.epoch) && r.Get(&e.offset) && r.Get(&e.length_state));
      e.segment = data->segment_id;
    }
  } else {
    if (count > r.remaining() / kMinEntryBytes) return bad("entry count exceeds the bytes");
    if (!DecodeEntries(&r, count, data->segment_id, &data->entries)) return bad("entry list");
  }
  data->streams.clear();
  if (std::string why = GetStreams(&r, &data->streams); !why.empty()) return bad(why);
  if (r.remaining() != 0) return bad("trailing bytes");
  return Status::OK();
}

Status DecodeIndexPart(std::string_view bytes, const SegmentIndexClose& close, uint32_t number,
                       SegmentIndexData* data) {
  auto bad = [&](std::string_view why) {
    return Corruption(fmt::format("part {} of the index of segment {} ({} bytes) is {}", number,
                                  close.segment_id, bytes.size(), why));
  };
  std::string_view body;
  if (!CheckChecksum(bytes, &body)) return bad("damaged: checksum mismatch");
  Reader r(body);
  uint32_t magic = 0, segment_id = 0, stored_number = 0;
  uint64_t nonce = 0, count = 0;
  if (!r.Get(&magic) || magic != kPartMagic) return bad("damaged: unknown magic or version");
  if (!r.Get(&segment_id) || !r.Get(&stored_number) || !r.Get(&nonce) || !r.Get(&count)) {
    return bad("damaged: header");
  }
  if (segment_id != close.segment_id) {
    return bad(fmt::format("not this segment's: it belongs to segment {}", segment_id));
  }
  if (stored_number != number) {
    return bad(fmt::format("not this segment's: it is part {}", stored_number));
  }
  if (nonce != close.nonce) {
    // Left by an earlier life of the segment id, before a crash or a wipe.
    return bad(
        fmt::format("not this segment's: it was written by another life of the segment "
                    "(nonce {:016x}, the closing record's {:016x})",
                    nonce, close.nonce));
  }
  if (!DecodeEntries(&r, count, segment_id, &data->entries)) return bad("damaged: entry list");
  if (std::string why = GetStreams(&r, &data->streams); !why.empty()) return bad("damaged: " + why);
  if (r.remaining() != 0) return bad("damaged: trailing bytes");
  return Status::OK();
}

}  // namespace tally::log
