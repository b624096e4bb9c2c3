// The stored segment index (docs/log-format.md): TSI2 round trips exactly,
// stays small for the usual layout of a segment, still reads TSI1, and
// refuses damaged bytes with Corruption.

#include <gtest/gtest.h>
#include <xxhash.h>

#include <cstring>
#include <random>

#include "metadata_store.h"

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
  for (size_t i = 0; i < a.streams.size(); ++i) {
    EXPECT_EQ(a.streams[i].first, b.streams[i].first);
    EXPECT_TRUE(a.streams[i].second == b.streams[i].second);
  }
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

TEST(SegmentIndexFormat, RoundTripsASegmentWrittenInOrder) {
  SegmentIndexData in = Contiguous(12, 10'000, 3);
  std::string bytes = EncodeSegmentIndex(in);
  SegmentIndexData out;
  ASSERT_TRUE(DecodeSegmentIndex(bytes, &out).ok());
  ExpectSame(in, out);
  // 4-5 bytes per entry (address, epoch and offset deltas of one byte, a
  // two-byte length): TSI1 took 28.
  const size_t bitmap = in.streams[0].second.getSizeInBytes(true) + 20;
  EXPECT_LE(bytes.size() - bitmap, in.entries.size() * 5 + 64);
}

TEST(SegmentIndexFormat, RoundTripsOutOfOrderAddressesEpochChangesGapsAndCorruptRecords) {
  std::mt19937_64 rng(42);
  SegmentIndexData in;
  in.segment_id = 4'000'000'000u;
  uint64_t offset = 0;
  uint64_t epoch = 1;
  for (int i = 0; i < 5'000; ++i) {
    // Any address (writers race, hole fills, copies), epochs that go up and
    // down between records, gaps (a torn record skipped by the scan), huge
    // values at the edges of their types.
    uint64_t address = rng() % 4 == 0 ? rng() : rng() % 1'000'000;
    if (i == 7) address = 0;
    if (i == 8) address = UINT64_MAX - 1;
    if (rng() % 50 == 0) epoch = rng() % 3 == 0 ? rng() : epoch + 1;
    if (rng() % 20 == 0) offset += rng() % 100'000;
    const uint32_t len = static_cast<uint32_t>(rng() % IndexEntry::kLengthMask) + 1;
    const EntryState st = rng() % 10 == 0 ? EntryState::kCorrupt : EntryState::kDurable;
    in.entries.push_back(Entry(address, epoch, offset, len, st));
    offset += len;
  }
  in.file_size = offset;
  SegmentIndexData out;
  ASSERT_TRUE(DecodeSegmentIndex(EncodeSegmentIndex(in), &out).ok());
  ExpectSame(in, out);
}

TEST(SegmentIndexFormat, RoundTripsAnEmptySegment) {
  SegmentIndexData in;
  in.segment_id = 3;
  SegmentIndexData out;
  ASSERT_TRUE(DecodeSegmentIndex(EncodeSegmentIndex(in), &out).ok());
  ExpectSame(in, out);
}

// The TSI1 layout of docs/log-format.md, written by hand.
std::string EncodeV1(const SegmentIndexData& d) {
  std::string out;
  auto put = [&](auto v) { out.append(reinterpret_cast<const char*>(&v), sizeof(v)); };
  put(uint32_t{0x31495354});
  put(d.segment_id);
  put(d.file_size);
  put(uint64_t{d.entries.size()});
  for (const IndexEntry& e : d.entries) {
    put(e.address);
    put(e.epoch);
    put(e.offset);
    put(e.length_state);
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

TEST(SegmentIndexFormat, ReadsTheOlderFixedWidthVersion) {
  SegmentIndexData in = Contiguous(5, 2'000, 1);
  SegmentIndexData out;
  ASSERT_TRUE(DecodeSegmentIndex(EncodeV1(in), &out).ok());
  ExpectSame(in, out);
}

TEST(SegmentIndexFormat, DamagedBytesAreCorruption) {
  const std::string good = EncodeSegmentIndex(Contiguous(9, 1'000, 2));
  SegmentIndexData out;
  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  EXPECT_EQ(DecodeSegmentIndex(flipped, &out).code(), Code::kCorruption);
  EXPECT_EQ(DecodeSegmentIndex(good.substr(0, good.size() - 1), &out).code(), Code::kCorruption);
  EXPECT_EQ(DecodeSegmentIndex(good.substr(0, 5), &out).code(), Code::kCorruption);

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
  Status st = DecodeSegmentIndex(resum(too_many), &out);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("entry count"), std::string::npos) << st.ToString();
  std::string version = body;
  version[3] = '9';
  st = DecodeSegmentIndex(resum(version), &out);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("version"), std::string::npos) << st.ToString();
  // A varint that never ends (every byte has its continuation bit).
  std::string endless = body.substr(0, 24);
  const uint64_t three = 3;
  std::memcpy(endless.data() + 16, &three, sizeof(three));
  endless.append(12, '\x80');
  endless.append(4, '\0');  // the stream count
  st = DecodeSegmentIndex(resum(endless), &out);
  EXPECT_EQ(st.code(), Code::kCorruption);
  EXPECT_NE(st.message().find("entry list"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace tally::log
