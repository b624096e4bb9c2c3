// The on-disk record layout: encode/parse round trip and damage detection.

#include "record_format.h"

#include <gtest/gtest.h>

#include <cstring>

namespace tally::log::format {
namespace {

Record Sample() {
  Record r;
  r.address = Address(4812);
  r.epoch = Epoch(3);
  r.streams = {StreamId{1, 2}, StreamId{3, 4}};
  r.payload = "the payload";
  return r;
}

std::string Encode(const Record& r) {
  std::string out(EncodedSize(r), '\0');
  EncodeRecord(r, out.data());
  return out;
}

TEST(RecordFormatTest, RoundTrip) {
  std::string bytes = Encode(Sample());
  ASSERT_EQ(bytes.size(), kHeaderSize + 32 + 11);
  uint32_t magic;
  std::memcpy(&magic, bytes.data(), 4);
  EXPECT_EQ(magic, kMagic);
  EXPECT_EQ(bytes.substr(0, 4), "TLR1");
  Header h;
  ASSERT_EQ(ParseRecord(bytes, &h), ParseResult::kOk);
  EXPECT_EQ(h.address, 4812u);
  EXPECT_EQ(h.total_size(), bytes.size());
  Record r = DecodeRecord(h, bytes);
  EXPECT_EQ(r.address, Address(4812));
  EXPECT_EQ(r.epoch, Epoch(3));
  EXPECT_EQ(r.streams, Sample().streams);
  EXPECT_EQ(r.payload, "the payload");
}

TEST(RecordFormatTest, EveryFlippedBitIsDetected) {
  const std::string good = Encode(Sample());
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      Header h;
      ParseResult r = ParseRecord(bad, &h);
      EXPECT_NE(r, ParseResult::kOk) << "byte " << i << " bit " << bit;
      if (i >= kHeaderSize) {
        EXPECT_EQ(r, ParseResult::kBadBody);
      }
    }
  }
}

TEST(RecordFormatTest, BodyConfirmsHeaderUnlessAddressDamaged) {
  const std::string good = Encode(Sample());
  std::string bad = good;
  bad[24] ^= 1;  // epoch: header checksum fails, body still confirms address
  Header h;
  ASSERT_EQ(ParseRecord(bad, &h), ParseResult::kBadHeader);
  EXPECT_TRUE(BodyConfirmsHeader(bad, h));
  EXPECT_EQ(h.address, 4812u);
  bad = good;
  bad[16] ^= 1;  // address: the seeded body checksum no longer matches
  ASSERT_EQ(ParseRecord(bad, &h), ParseResult::kBadHeader);
  EXPECT_FALSE(BodyConfirmsHeader(bad, h));
}

TEST(RecordFormatTest, TruncatedIsIncompleteOrBadHeader) {
  const std::string good = Encode(Sample());
  Header h;
  EXPECT_EQ(ParseRecord(std::string_view(good).substr(0, 20), &h), ParseResult::kBadHeader);
  EXPECT_EQ(ParseRecord(std::string_view(good).substr(0, good.size() - 1), &h),
            ParseResult::kIncomplete);
}

TEST(RecordFormatTest, PrefixPlusPayloadEqualsWholeRecord) {
  Record r = Sample();
  r.payload = std::string(5000, 'p');
  std::string prefix(PrefixSize(r), '\0');
  EncodeRecordPrefix(r, prefix.data());
  EXPECT_EQ(prefix + r.payload, Encode(r));
}

}  // namespace
}  // namespace tally::log::format
