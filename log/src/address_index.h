#pragma once

// Private: the in-memory map from address to where its record lives.
//
// An open-addressing table with linear probing and Fibonacci hashing (the
// top bits of address * 2^64/phi pick the home slot), sized to a power of
// two and kept at most 5/8 full. Slots are plain structs in one array, so an
// insert allocates nothing except when the table doubles, and doubling walks
// both arrays in order (top-bit hashing keeps home slots sorted). Batch
// callers Prefetch() a few keys ahead to overlap cache misses. Not
// thread-safe: SegmentStore guards it with its mutex.

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tally::log {

enum class EntryState : uint32_t {
  kPending = 1,  // submitted, not yet durable: blocks a second write, not readable
  kDurable = 2,  // synced: readable
  kCorrupt = 3,  // failed its checksum at recovery: written, never served
};

struct IndexEntry {
  static constexpr uint64_t kEmpty = ~0ull;  // == kNoAddress, never a valid address

  uint64_t address = kEmpty;
  uint64_t epoch = 0;
  uint64_t offset = 0;   // byte offset of the record in its segment file
  uint32_t segment = 0;  // segment id
  uint32_t length_state = 0;

  static constexpr uint32_t kLengthMask = (1u << 30) - 1;
  uint32_t length() const { return length_state & kLengthMask; }
  EntryState state() const { return static_cast<EntryState>(length_state >> 30); }
  void Set(EntryState s, uint32_t length) {
    length_state = (static_cast<uint32_t>(s) << 30) | (length & kLengthMask);
  }
};

class AddressIndex {
 public:
  // Records longer than this cannot be indexed (SegmentStore::Open enforces it).
  static constexpr uint32_t kMaxLength = IndexEntry::kLengthMask;

  AddressIndex();

  // The entry for `address`, or nullptr. Valid until the next Insert/Erase.
  IndexEntry* Find(uint64_t address);
  const IndexEntry* Find(uint64_t address) const;

  // Adds an entry for `address`, which must be absent and != kEmpty; returns
  // it with only `address` set. Valid until the next Insert/Erase.
  IndexEntry* Insert(uint64_t address);

  // Removes `address` if present.
  void Erase(uint64_t address);

  // Removes every entry with address < mark except pending ones (their
  // writer still owns them); rebuilds the table. Returns how many it removed.
  size_t EraseBelow(uint64_t mark);

  // Hints that `address` will be looked up soon.
  void Prefetch(uint64_t address) const { __builtin_prefetch(&slots_[Home(address)]); }

  // Grows so that `n` entries fit without another doubling.
  void Reserve(size_t n);

  size_t size() const { return size_; }
  size_t capacity() const { return slots_.size(); }

 private:
  size_t Home(uint64_t address) const {
    return static_cast<size_t>((address * 0x9E3779B97F4A7C15ull) >> shift_);
  }
  void Rehash(size_t new_capacity);

  std::vector<IndexEntry> slots_;
  size_t mask_ = 0;
  int shift_ = 64;
  size_t size_ = 0;
  size_t grow_at_ = 0;
};

}  // namespace tally::log
