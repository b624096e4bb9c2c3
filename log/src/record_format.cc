#include "record_format.h"

#define XXH_STATIC_LINKING_ONLY  // XXH3_state_t on the stack
#include <xxhash.h>

#include <bit>
#include <cstring>

namespace tally::log::format {

static_assert(std::endian::native == std::endian::little,
              "the on-disk format is little-endian; add byte swaps for big-endian hosts");

namespace {

template <typename T>
void Put(char* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

template <typename T>
T Get(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

uint64_t BodyChecksum(const char* body, size_t length, uint64_t address) {
  return XXH3_64bits_withSeed(body, length, address);
}

constexpr size_t kHeaderChecksumOffset = 40;

}  // namespace

namespace {

// Writes the stream ids at `body` and the header at `out`, given the body
// checksum.
void EncodeHeaderAndStreams(const Record& record, char* out, uint64_t body_checksum) {
  const size_t nstreams = record.streams.size();
  const size_t body_length = nstreams * kStreamIdSize + record.payload.size();
  char* p = out + kHeaderSize;
  for (const StreamId& s : record.streams) {
    Put<uint64_t>(p, s.hi);
    Put<uint64_t>(p + 8, s.lo);
    p += kStreamIdSize;
  }
  Put<uint32_t>(out + 0, kMagic);
  Put<uint8_t>(out + 4, kVersion);
  Put<uint8_t>(out + 5, static_cast<uint8_t>(record.type));
  Put<uint16_t>(out + 6, static_cast<uint16_t>(nstreams));
  Put<uint32_t>(out + 8, static_cast<uint32_t>(body_length));
  Put<uint32_t>(out + 12, 0);
  Put<uint64_t>(out + 16, record.address.value());
  Put<uint64_t>(out + 24, record.epoch.value());
  Put<uint64_t>(out + 32, body_checksum);
  Put<uint64_t>(out + kHeaderChecksumOffset, XXH3_64bits(out, kHeaderChecksumOffset));
}

}  // namespace

void EncodeRecord(const Record& record, char* out) {
  // Stream ids first (checksum 0 for now), then the payload, then the real
  // checksum over the contiguous body.
  EncodeHeaderAndStreams(record, out, 0);
  char* payload = out + PrefixSize(record);
  if (!record.payload.empty()) std::memcpy(payload, record.payload.data(), record.payload.size());
  const size_t body_length = record.streams.size() * kStreamIdSize + record.payload.size();
  const uint64_t sum = BodyChecksum(out + kHeaderSize, body_length, record.address.value());
  Put<uint64_t>(out + 32, sum);
  Put<uint64_t>(out + kHeaderChecksumOffset, XXH3_64bits(out, kHeaderChecksumOffset));
}

void EncodeRecordPrefix(const Record& record, char* out) {
  EncodeHeaderAndStreams(record, out, 0);
  XXH3_state_t state;
  XXH3_64bits_reset_withSeed(&state, record.address.value());
  XXH3_64bits_update(&state, out + kHeaderSize, record.streams.size() * kStreamIdSize);
  XXH3_64bits_update(&state, record.payload.data(), record.payload.size());
  Put<uint64_t>(out + 32, XXH3_64bits_digest(&state));
  Put<uint64_t>(out + kHeaderChecksumOffset, XXH3_64bits(out, kHeaderChecksumOffset));
}

ParseResult ParseRecord(std::span<const char> bytes, Header* header) {
  if (bytes.size() < kHeaderSize) return ParseResult::kBadHeader;
  const char* p = bytes.data();
  header->type = Get<uint8_t>(p + 5);
  header->nstreams = Get<uint16_t>(p + 6);
  header->body_length = Get<uint32_t>(p + 8);
  header->address = Get<uint64_t>(p + 16);
  header->epoch = Get<uint64_t>(p + 24);
  header->body_checksum = Get<uint64_t>(p + 32);
  if (Get<uint32_t>(p) != kMagic || Get<uint8_t>(p + 4) != kVersion ||
      Get<uint64_t>(p + kHeaderChecksumOffset) != XXH3_64bits(p, kHeaderChecksumOffset)) {
    return ParseResult::kBadHeader;
  }
  // A header can verify and still be nonsense only if written so by a bug;
  // treat that like damage rather than trusting the lengths.
  if (Get<uint32_t>(p + 12) != 0 ||
      (header->type != static_cast<uint8_t>(RecordType::kData) &&
       header->type != static_cast<uint8_t>(RecordType::kHole)) ||
      static_cast<uint64_t>(header->nstreams) * kStreamIdSize > header->body_length) {
    return ParseResult::kBadHeader;
  }
  if (bytes.size() - kHeaderSize < header->body_length) return ParseResult::kIncomplete;
  if (BodyChecksum(p + kHeaderSize, header->body_length, header->address) !=
      header->body_checksum) {
    return ParseResult::kBadBody;
  }
  return ParseResult::kOk;
}

bool BodyConfirmsHeader(std::span<const char> bytes, const Header& header) {
  if (bytes.size() < kHeaderSize || bytes.size() - kHeaderSize < header.body_length) return false;
  return BodyChecksum(bytes.data() + kHeaderSize, header.body_length, header.address) ==
         header.body_checksum;
}

Record DecodeRecord(const Header& header, std::span<const char> bytes) {
  Record r;
  r.address = Address(header.address);
  r.epoch = Epoch(header.epoch);
  r.type = static_cast<RecordType>(header.type);
  const char* p = bytes.data() + kHeaderSize;
  r.streams.resize(header.nstreams);
  for (StreamId& s : r.streams) {
    s.hi = Get<uint64_t>(p);
    s.lo = Get<uint64_t>(p + 8);
    p += kStreamIdSize;
  }
  const size_t payload = header.body_length - header.nstreams * kStreamIdSize;
  r.payload.assign(p, payload);
  return r;
}

}  // namespace tally::log::format
