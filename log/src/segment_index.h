#pragma once

// Private: a segment's stored index, which lets recovery load a closed
// segment without scanning its file (docs/log-format.md, "Metadata").
//
// It is stored in parts while the segment fills: the writer encodes each
// record's entry as it publishes it (SegmentIndexBuilder), and every
// `index_part_entries` entries the part is handed to the indexer thread,
// which stores it (segpart/<id>/<n>). When the segment rolls, the last part
// and a closing record (seg/<id>: file size, entry and part counts) are
// stored together. Storing the whole index at the roll instead (TSI2, a
// 2.7 MB value for a 64 MiB segment of 64-byte appends) cost each unit of
// a chain 10-35 ms of CPU at the same moment, and the appends of the next
// 30-40 ms waited for it (bench/README.md, Sessions 14 and 15: the p99 of
// append_bench's 100k row was lower with parts in the last 19 of 19 pairs,
// disk probe p99 0.58-1.34 ms; in the 23 pairs before, with the disk's
// tail slower, the two were within the run-to-run spread).
//
// The closing record and every part carry the segment's nonce, drawn when
// its builder was made, so parts left by an earlier life of the same
// segment id (before a crash or a wipe) are never mistaken for its own.

#include <cstdint>
#include <roaring/roaring64map.hh>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "address_index.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"

namespace tally::log {

// Everything needed to serve a closed segment without scanning it.
struct SegmentIndexData {
  uint32_t segment_id = 0;
  uint64_t file_size = 0;           // bytes of the file when it was closed
  std::vector<IndexEntry> entries;  // durable and corrupt records, file order
  // A stream may appear more than once (once per part that holds it).
  std::vector<std::pair<StreamId, Roaring64Map>> streams;
};

// One part of a segment's index: consecutive entries (file order), encoded,
// and the addresses of each stream among them.
struct SegmentIndexPart {
  uint32_t segment_id = 0;
  uint32_t number = 0;  // 0, 1, ... within the segment
  uint64_t nonce = 0;
  uint64_t count = 0;   // entries
  std::string entries;  // count varint-encoded entries, deltas from 0
  std::unordered_map<StreamId, Roaring64Map> streams;
};

// A stored closing record (TSI3): the parts to read and what they must add
// up to.
struct SegmentIndexClose {
  uint32_t segment_id = 0;
  uint64_t file_size = 0;
  uint64_t entries = 0;
  uint32_t parts = 0;
  uint64_t nonce = 0;
};

// The index of the open segment, built as its records are published. Not
// thread-safe: the writer thread owns it.
class SegmentIndexBuilder {
 public:
  SegmentIndexBuilder() = default;
  // An empty index for segment `segment_id`, with a fresh nonce.
  explicit SegmentIndexBuilder(uint32_t segment_id);

  uint32_t segment_id() const { return part_.segment_id; }
  // Appends one record's entry (records in file order).
  void Add(const IndexEntry& e);
  // Records that `address` (added last, or earlier in this part) is in
  // `stream`.
  void AddStream(const StreamId& stream, uint64_t address);
  // Entries in the part being built.
  uint64_t part_entries() const { return part_.count; }
  // Moves out the part being built (numbered) and starts the next one.
  SegmentIndexPart TakePart();
  // The closing record of a segment of `file_size` bytes; every part must
  // have been taken.
  std::string EncodeClose(uint64_t file_size) const;

 private:
  SegmentIndexPart part_;
  uint64_t taken_entries_ = 0;
  // Delta state: the last entry's address, epoch and end (0 at a part's start).
  uint64_t address_ = 0, epoch_ = 0, end_ = 0;
  // AddStream's last stream (the part's map nodes are stable until TakePart).
  StreamId last_stream_;
  Roaring64Map* last_map_ = nullptr;
};

// Serializes a taken part (run-optimizing its stream maps), checksummed.
std::string EncodeIndexPart(SegmentIndexPart& part);

// A stored seg/<id> value. TSI3: fills *close, leaves *data alone (the
// parts hold the entries) and sets *has_parts. TSI1 and TSI2, the whole
// index in one value (written before 2026-11-25): fills *data.
// Errors: Corruption if the bytes are damaged or of an unknown version.
Status DecodeSegmentIndex(std::string_view bytes, SegmentIndexData* data, SegmentIndexClose* close,
                          bool* has_parts);
// Appends part `number` of the segment `close` describes to *data.
// Errors: Corruption if the bytes are damaged or belong to another segment,
// part or life of the segment (nonce).
Status DecodeIndexPart(std::string_view bytes, const SegmentIndexClose& close, uint32_t number,
                       SegmentIndexData* data);

}  // namespace tally::log
