#pragma once

// Private: the byte layout of one record in a segment file
// (docs/log-format.md). Pure functions over bytes, no I/O.
//
//   offset size field
//        0    4 magic "TLR1" (0x31524C54 little-endian)
//        4    1 format version (1)
//        5    1 type (RecordType)
//        6    2 nstreams
//        8    4 body length = nstreams * 16 + payload length
//       12    4 flags (0 in version 1)
//       16    8 address
//       24    8 epoch
//       32    8 body checksum: XXH3-64 of the body, seeded with the address
//       40    8 header checksum: XXH3-64 of bytes [0, 40)
//       48      body: nstreams x (hi u64, lo u64), then the payload
// All integers are little-endian.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "tally/base/status.h"
#include "tally/log/record.h"

namespace tally::log::format {

inline constexpr uint32_t kMagic = 0x31524C54;  // "TLR1" on disk
inline constexpr uint8_t kVersion = 1;
inline constexpr size_t kHeaderSize = 48;
inline constexpr size_t kStreamIdSize = 16;
inline constexpr size_t kMaxStreams = 0xFFFF;

// The decoded fixed header of a record.
struct Header {
  uint8_t type = 0;
  uint16_t nstreams = 0;
  uint32_t body_length = 0;
  uint64_t address = 0;
  uint64_t epoch = 0;
  uint64_t body_checksum = 0;

  size_t total_size() const { return kHeaderSize + body_length; }
};

// Bytes `record` occupies on disk.
inline size_t EncodedSize(const Record& record) {
  return kHeaderSize + record.streams.size() * kStreamIdSize + record.payload.size();
}

// Writes the record at `out`, which must hold EncodedSize(record) bytes.
// The caller has checked record.streams.size() <= kMaxStreams and that the
// body length fits in 32 bits.
void EncodeRecord(const Record& record, char* out);

// Scatter-gather variant for large payloads: writes only the header and the
// stream ids (PrefixSize bytes) to `out`; the caller writes record.payload
// right after them. Same bytes on disk as EncodeRecord.
inline size_t PrefixSize(const Record& record) {
  return kHeaderSize + record.streams.size() * kStreamIdSize;
}
void EncodeRecordPrefix(const Record& record, char* out);

// Outcome of parsing the bytes at one offset of a segment.
enum class ParseResult {
  kOk,          // header and body verified
  kIncomplete,  // valid header, but the body runs past the end of the bytes
  kBadHeader,   // too short for a header, wrong magic/version, or header checksum fails
  kBadBody,     // valid header, body checksum fails
};

// Parses the record starting at bytes[0]. Fills *header whenever the header
// verified (kOk, kIncomplete, kBadBody). For kBadHeader, *header holds the
// unverified fields as read when at least kHeaderSize bytes were available.
ParseResult ParseRecord(std::span<const char> bytes, Header* header);

// True if `header` (unverified) names a body that lies within `bytes` and
// whose checksum, seeded with header.address, matches: then address, body
// length and body checksum are trustworthy even though another header field
// was damaged. Used by recovery to name the address of a record whose header
// failed its checksum.
bool BodyConfirmsHeader(std::span<const char> bytes, const Header& header);

// Decodes a record whose bytes ParseRecord accepted.
Record DecodeRecord(const Header& header, std::span<const char> bytes);

}  // namespace tally::log::format
