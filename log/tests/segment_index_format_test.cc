// The stored segment index (docs/log-format.md): an index built part by
// part (TSI3) round trips exactly through its parts and closing record,
// stays small for the usual layout of a segment, and refuses parts of
// another segment, part or life; the older whole-index versions (TSI2,
// TSI1) still read; damaged bytes are Corruption.

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <map>
#include <random>
#include <tuple>

#include "segment_index.h"

namespace tally::log {
namespace {

IndexEntry Entry(uint64_t address, uint64_t epoch, uint64_t offset, uint32_t length,
                 EntryState state = EntryState::kDurable) {
  IndexEntry e;
  e.address = address;
  e.epoch = epoch;
  e.offset = offset;
  e.Set(state, length);
  return e;
}

void ExpectSame(const SegmentIndexData& a, const SegmentIndexData& b) {
  EXPECT_EQ(a.segment_id, b.segment_id);
  EXPECT_EQ(a.file_size, b.file_size);
  ASSERT_EQ(a.entries.size(), b.entries.size());
  for (size_t i = 0; i < a.entries.size(); ++i) {
    SCOPED_TRACE("entry " + std::to_string(i));
    EXPECT_EQ(a.entries[i].address, b.entries[i].address);
    EXPECT_EQ(a.entries[i].epoch, b.entries[i].epoch);
    EXPECT_EQ(a.entries[i].offset, b.entries[i].offset);
    EXPECT_EQ(a.entries[i].length_state, b.entries[i].length_state);
    EXPECT_EQ(b.entries[i].segment, a.segment_id);
  }
  ASSERT_EQ(a.streams.size(), b.streams.size());
  // TSI2 and TSI1 list each stream once, in the order written.
  for (size_t i = 0; i < a.streams.size(); ++i) {
    EXPECT_EQ(a.streams[i].first, b.streams[i].first);
    EXPECT_TRUE(a.streams[i].second == b.streams[i].second);
  }
}

// Decodes a whole-index value (TSI2 or TSI1).
Status DecodeWhole(std::string_view bytes, SegmentIndexData* out) {
  SegmentIndexClose close;
  bool has_parts = true;
  Status st = DecodeSegmentIndex(bytes, out, &close, &has_parts);
  EXPECT_FALSE(has_parts);
  return st;
}

// A segment as a chain of one stripe out of `stripes` writes it: addresses
// step by `stripes`, records back to back.
SegmentIndexData Contiguous(uint32_t id, size_t n, uint64_t stripes) {
  SegmentIndexData d;
  d.segment_id = id;
  uint64_t offset = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t len = 100 + static_cast<uint32_t>(i % 40);
    d.entries.push_back(Entry(1'000'000 + i * stripes, 7, offset, len));
    offset += len;
  }
  d.file_size = offset;
  Roaring64Map s;
  for (size_t i = 0; i < n; i += 3) s.add(d.entries[i].address);
  d.streams.emplace_back(StreamId{1, 2}, std::move(s));
  return d;
}

constexpr uint32_t kMagicV1 = 0x31495354;  // "TSI1"
constexpr uint32_t kMagicV2 = 0x32495354;  // "TSI2"

// A whole-index value as stores before TSI3 wrote it, assembled here from
// docs/log-format.md: TSI1's fixed-width entries, or TSI2's varint entries,
// which are those of a single TSI3 part byte for byte.
std::string EncodeWhole(uint32_t magic, const SegmentIndexData& d) {
  std::string out;
  auto put = [&](auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(magic);
  put(d.segment_id);
  put(d.file_size);
  put(uint64_t{d.entries.size()});
  if (magic == kMagicV1) {
    for (const IndexEntry& e : d.entries) {
      put(e.address);
      put(e.epoch);
      put(e.offset);
      put(e.length_state);
    }
  } else {
    SegmentIndexBuilder b(d.segment_id);
    for (const IndexEntry& e : d.entries) b.Add(e);
    out += b.TakePart().entries;
  }
  put(static_cast<uint32_t>(d.streams.size()));
  for (const auto& [id, bm] : d.streams) {
    std::string blob(bm.getSizeInBytes(true), '\0');
    bm.write(blob.data(), true);
    put(id.hi);
    put(id.lo);
    put(static_cast<uint32_t>(blob.size()));
    out += blob;
  }
  put(uint64_t{XXH3_64bits(out.data(), out.size())});
  return out;
}

TEST(SegmentIndexFormat, V2RoundTripsASegmentWrittenInOrder) {
  SegmentIndexData in = Contiguous(12, 10'000, 3);
  std::string bytes = EncodeWhole(kMagicV2, in);
  SegmentIndexData out;
  ASSERT_TRUE(DecodeWhole(bytes, &out).ok());
  ExpectSame(in, out);
  // 4-5 bytes per entry (address, epoch and offset deltas of one byte, a
  // two-byte length): TSI1 took 28.
  const size_t bitmap = in.streams[0].second.getSizeInBytes(true) + 20;
  EXPECT_LE(bytes.size() - bitmap, in.entries.size() * 5 + 64);
}

// Entries as no chain writes them in the usual way: any address (writers
// race, hole fills, copies), epochs that go up and down between records,
// gaps (a torn record skipped by the scan), huge values at the edges of
// their types, corrupt records; a few streams.
SegmentIndexData Irregular() {
  std::mt19937_64 rng(42);
  SegmentIndexData in;
  in.segment_id = 4'000'000'000u;
  uint64_t offset = 0;
  uint64_t epoch = 1;
  Roaring64Map odd, big;
  for (int i = 0; i < 5'000; ++i) {
    uint64_t address = rng() % 4 == 0 ? rng() : rng() % 1'000'000;
    if (i == 7) address = 0;
    if (i == 8) address = UINT64_MAX - 1;
    if (rng() % 50 == 0) epoch = rng() % 3 == 0 ? rng() : epoch + 1;
    if (rng() % 20 == 0) offset += rng() % 100'000;
    const uint32_t len = static_cast<uint32_t>(rng() % IndexEntry::kLengthMask) + 1;
    const EntryState st = rng() % 10 == 0 ? EntryState::kCorrupt : EntryState::kDurable;
    in.entries.push_back(Entry(address, epoch, offset, len, st));
    if (address % 2 == 1) odd.add(address);
    if (address > 1'000'000) big.add(address);
    offset += len;
  }
  in.file_size = offset;
  in.streams.emplace_back(StreamId{3, 4}, std::move(odd));
  in.streams.emplace_back(StreamId{~0ull, 5}, std::move(big));
  return in;
}

TEST(SegmentIndexFormat, V2RoundTripsOutOfOrderAddressesEpochChangesGapsAndCorruptRecords) {
  SegmentIndexData in = Irregular();
  SegmentIndexData out;
  ASSERT_TRUE(DecodeWhole(EncodeWhole(kMagicV2, in), &out).ok());
  ExpectSame(in, out);
}

TEST(SegmentIndexFormat, V2RoundTripsAnEmptySegment) {
  SegmentIndexData in;
  in.segment_id = 3;
  SegmentIndexData out;
  ASSERT_TRUE(DecodeWhole(EncodeWhole(kMagicV2, in), &out).ok());
  ExpectSame(in, out);
}

TEST(SegmentIndexFormat, ReadsTheOlderFixedWidthVersion) {
  SegmentIndexData in = Contiguous(5, 2'000, 1);
  SegmentIndexData out;
  ASSERT_TRUE(DecodeWhole(EncodeWhole(kMagicV1, in), &out).ok());
  ExpectSame(in, out);
}

TEST(SegmentIndexFormat, DamagedV2BytesAreCorruption) {
  const std::string good = EncodeWhole(kMagicV2, Contiguous(9, 1'000, 2));
  SegmentIndexData out;
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  EXPECT_EQ(DecodeWhole(flipped, &out).code(), Code::kCorruption);
  EXPECT_EQ(DecodeWhole(good.substr(0, good.size() - 1), &out).code(), Code::kCorruption);
  EXPECT_EQ(DecodeWhole(good.substr(0, 5), &out).code(), Code::kCorruption);

  // A checksum that matches over a body that does not parse: an entry count
  // larger than the bytes, and an unknown version.
  auto resum = [](std::string body) {
    const uint64_t h = XXH3_64bits(body.data(), body.size());
    body.append(reinterpret_cast<const char*>(&h), sizeof(h));
    return body;
  };
  std::string body = good.substr(0, good.size() - 8);
  std::string too_many = body;
  const uint64_t huge = uint64_t{1} << 40;
  std::memcpy(too_many.data() + 16, &huge, sizeof(huge));
  Status st = DecodeWhole(resum(too_many), &out);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("entry count"), std::string::npos) << st.ToString();
  std::string version = body;
  version[3] = '9';
  st = DecodeWhole(resum(version), &out);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("version"), std::string::npos) << st.ToString();
  // A varint that never ends (every byte has its continuation bit).
  std::string endless = body.substr(0, 24);
  const uint64_t three = 3;
  std::memcpy(endless.data() + 16, &three, sizeof(three));
  endless.append(12, '\x80');
  endless.append(4, '\0');  // the stream count
  st = DecodeWhole(resum(endless), &out);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("entry list"), std::string::npos) << st.ToString();
}

// The values the store writes for `in`: its parts, built entry by entry as
// the writer does, taken every `part_entries`, and the closing record.
struct StoredIndex {
  std::vector<std::string> parts;
  std::string close;
};

StoredIndex BuildInParts(const SegmentIndexData& in, uint64_t part_entries) {
  SegmentIndexBuilder b(in.segment_id);
  StoredIndex out;
  auto take = [&] {
    SegmentIndexPart part = b.TakePart();
    EXPECT_EQ(part.number, out.parts.size());
    out.parts.push_back(EncodeIndexPart(part));
  };
  for (const IndexEntry& e : in.entries) {
    b.Add(e);
    for (const auto& [id, bm] : in.streams) {
      if (bm.contains(e.address)) b.AddStream(id, e.address);
    }
    if (b.part_entries() >= part_entries) take();
  }
  if (b.part_entries() > 0) take();
  out.close = b.EncodeClose(in.file_size);
  return out;
}

Status DecodeParts(const StoredIndex& stored, SegmentIndexData* out) {
  SegmentIndexClose close;
  bool has_parts = false;
  TALLY_RETURN_IF_ERROR(DecodeSegmentIndex(stored.close, out, &close, &has_parts));
  EXPECT_TRUE(has_parts);
  EXPECT_EQ(close.parts, stored.parts.size());
  out->segment_id = close.segment_id;
  out->file_size = close.file_size;
  for (uint32_t n = 0; n < close.parts; ++n) {
    TALLY_RETURN_IF_ERROR(DecodeIndexPart(stored.parts[n], close, n, out));
  }
  EXPECT_EQ(out->entries.size(), close.entries);
  return Status::OK();
}

// Each stream's addresses, whatever parts they came in.
std::map<StreamId, Roaring64Map> Merged(const SegmentIndexData& d) {
  std::map<StreamId, Roaring64Map> out;
  for (const auto& [id, bm] : d.streams) out[id] |= bm;
  return out;
}

void ExpectSameInParts(const SegmentIndexData& in, const SegmentIndexData& out) {
  SegmentIndexData whole = out;
  whole.streams.clear();
  SegmentIndexData expected = in;
  expected.streams.clear();
  ExpectSame(expected, whole);
  EXPECT_TRUE(Merged(in) == Merged(out));
}

TEST(SegmentIndexFormat, PartsRoundTripASegmentWrittenInOrder) {
  SegmentIndexData in = Contiguous(12, 10'000, 3);
  StoredIndex stored = BuildInParts(in, 1'000);
  ASSERT_EQ(stored.parts.size(), 10u);
  SegmentIndexData out;
  ASSERT_TRUE(DecodeParts(stored, &out).ok());
  ExpectSameInParts(in, out);
  // Still 4-5 bytes per entry, plus a header and a stream map per part.
  for (const std::string& part : stored.parts) {
    EXPECT_LE(part.size(), 1'000u * 5 + 64 + 20 + 1'000 / 3 * 2 + 64) << part.size();
  }
}

TEST(SegmentIndexFormat, PartsRoundTripIrregularEntriesInUnevenParts) {
  SegmentIndexData in = Irregular();
  StoredIndex stored = BuildInParts(in, 333);
  ASSERT_EQ(stored.parts.size(), 16u);  // 15 of 333, the last of 5
  SegmentIndexData out;
  ASSERT_TRUE(DecodeParts(stored, &out).ok());
  ExpectSameInParts(in, out);
}

TEST(SegmentIndexFormat, AnEmptySegmentHasAClosingRecordAndNoParts) {
  SegmentIndexData in;
  in.segment_id = 3;
  StoredIndex stored = BuildInParts(in, 100);
  EXPECT_TRUE(stored.parts.empty());
  SegmentIndexData out;
  ASSERT_TRUE(DecodeParts(stored, &out).ok());
  EXPECT_EQ(out.segment_id, 3u);
  EXPECT_TRUE(out.entries.empty());
}

TEST(SegmentIndexFormat, APartOfAnotherSegmentPartOrLifeIsRefused) {
  const SegmentIndexData in = Contiguous(7, 300, 1);
  const StoredIndex stored = BuildInParts(in, 100);
  // The same segment id again (after a crash or a wipe): another nonce.
  const StoredIndex again = BuildInParts(in, 100);
  SegmentIndexData other_id = in;
  other_id.segment_id = 8;
  const StoredIndex other = BuildInParts(other_id, 100);
  SegmentIndexClose close;
  bool has_parts = false;
  SegmentIndexData out;
  ASSERT_TRUE(DecodeSegmentIndex(stored.close, &out, &close, &has_parts).ok());
  ASSERT_TRUE(has_parts);
  EXPECT_EQ(close.entries, 300u);
  EXPECT_EQ(close.parts, 3u);

  EXPECT_TRUE(DecodeIndexPart(stored.parts[1], close, 1, &out).ok());
  for (const auto& [bytes, number, why] :
       {std::tuple{again.parts[1], 1u, "another life"},
        std::tuple{stored.parts[1], 2u, "it is part 1"},
        std::tuple{other.parts[1], 1u, "belongs to segment 8"}}) {
    Status st = DecodeIndexPart(bytes, close, number, &out);
    EXPECT_EQ(st.code(), Code::kCorruption) << why;
    EXPECT_NE(st.message().find("not this segment's"), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find(why), std::string::npos) << st.ToString();
  }
  std::string flipped = stored.parts[2];
  flipped[flipped.size() / 2] ^= 0x01;
  Status st = DecodeIndexPart(flipped, close, 2, &out);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("checksum"), std::string::npos) << st.ToString();
  std::string close_flipped = stored.close;
  close_flipped[5] ^= 0x01;
  EXPECT_EQ(DecodeSegmentIndex(close_flipped, &out, &close, &has_parts).code(), Code::kCorruption);
}

}  // namespace
}  // namespace tally::log
