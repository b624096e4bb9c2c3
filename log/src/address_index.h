#pragma once

// Private: the in-memory map from address to where its record lives.
//
// An open-addressing table with linear probing and Fibonacci hashing (the
// top bits of address * 2^64/phi pick the home slot), sized to a power of
// two and kept at most about 5/8 full. Slots are plain structs in one array,
// so an insert allocates nothing. Batch callers Prefetch() a few keys ahead
// to overlap cache misses. Not thread-safe: SegmentStore guards it with its
// mutex.
//
// Growth is incremental, so that no single Insert pays for the whole table.
// Doubling at once (map and fill twice the slots, re-place every entry,
// unmap the old array) took ~100 ms at a million entries, all of it under
// the store's mutex, stalling every append of the unit; and since every unit
// of a chain holds the same addresses, each unit stalled in turn, one after
// the other: the ~200 ms stalls that set append_bench's half-load p99
// (bench/README.md). Instead, once the table is 5/8 full:
//   1. preparing: the next table (twice the slots) is mapped, and each Insert
//      initializes kFillPerInsert more of its slots (first touch of its
//      pages included). Lookups and inserts still use the current table,
//      which reaches ~21/32 full by the end of this phase.
//   2. migrating: the next table becomes the current one and takes every
//      insert; each Insert also moves the entries of kMovePerInsert more old
//      slots, in slot order, and unmaps the old pages already passed.
//      Lookups try the current table, then the old one's unmoved slots. It
//      ends (the old table is gone) while the new one is ~3/8 full.
// Erase, EraseBelow and Reserve (rare: failed writes, trim, recovery) finish
// a growth in progress at once.
//
// Preparing still touched fresh memory under the store's mutex: a page fault
// every two inserts, each costly in a VM (the host backs the page too).
// Preparing an 8M-slot table took 1.5 s, during which every unit of a chain
// (same addresses, so the same growth schedule) answered 4-10x slower:
// append_bench's 100k/s row went from ~4 ms to 20-110 ms per batch and built
// a 25,000-append backlog (p99 200-300 ms). So a caller with a spare thread
// builds the next table ahead, off its lock: TakeSpareRequest() says, once
// the table is half full, which capacity to build; MapSpare() maps it and
// Spare::Fill() initializes it a piece at a time on any thread (SegmentStore
// paces the pieces by the index's progress towards 5/8: filling 3 x 512 MiB
// at once starved the box for 1.6 s); AddSpare() hands it over, and the
// growth at 5/8 migrates from its first insert. Without a spare (no helper
// thread, or it is late) the growth prepares incrementally as above. Tables
// ask for transparent huge pages: one fault per 2 MiB, and fewer TLB misses
// on the random probes of a large table.

#include <cstddef>
#include <cstdint>

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
  // Growth work per Insert (see the top of this file): next-table slots
  // initialized while preparing, old-table slots moved while migrating.
  static constexpr size_t kFillPerInsert = 64;
  static constexpr size_t kMovePerInsert = 16;

  AddressIndex();
  ~AddressIndex();
  AddressIndex(const AddressIndex&) = delete;
  AddressIndex& operator=(const AddressIndex&) = delete;

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
  void Prefetch(uint64_t address) const { __builtin_prefetch(&cur_.slots[cur_.Home(address)]); }

  // Grows so that `n` entries fit without another growth.
  void Reserve(size_t n);

  // A table built ahead for the next growth (see the top of this file).
  class Spare {
   public:
    Spare() = default;
    Spare(Spare&& o) noexcept;
    Spare& operator=(Spare&& o) noexcept;
    ~Spare();
    size_t capacity() const { return capacity_; }
    // Initializes up to `slots` more slots; true once every slot is. Slow
    // (first touch of fresh pages): call it without the index's lock.
    bool Fill(size_t slots);
    // Slots initialized so far, as a fraction of the capacity.
    double filled_fraction() const;

   private:
    friend class AddressIndex;
    IndexEntry* slots_ = nullptr;  // mapped; [0, filled_) initialized empty
    size_t capacity_ = 0;
    size_t filled_ = 0;
  };
  // The capacity the caller should PrepareSpare() now, once per growth; 0 if
  // none is wanted (not half full yet, already asked, or one is held).
  size_t TakeSpareRequest();
  // Maps a table of `capacity` slots, to be initialized with Spare::Fill (a
  // piece at a time, so a caller can spread the page faults). Thread-safe.
  static Spare MapSpare(size_t capacity);
  // MapSpare and Fill all of it.
  static Spare PrepareSpare(size_t capacity);
  // Keeps `spare` (fully filled) for the next growth if it still fits it (or
  // swaps it in for a growth that is preparing incrementally); otherwise
  // returns it, to be destroyed (unmapped) by the caller, preferably outside
  // the lock.
  Spare AddSpare(Spare spare);
  // True while a spare is held for the next growth.
  bool has_spare() const { return spare_.slots != nullptr; }

  size_t size() const { return size_; }
  // Slots of the table that takes inserts.
  size_t capacity() const { return cur_.capacity; }
  // True while a growth is in progress (preparing or migrating).
  bool growing() const { return phase_ != Phase::kStable; }

 private:
  // One slot array: an anonymous mapping of its own, so that a table being
  // prepared costs memory only as its slots are initialized, and a migrated
  // table can be unmapped piece by piece.
  struct Table {
    IndexEntry* slots = nullptr;
    size_t capacity = 0;  // a power of two
    size_t mask = 0;
    int shift = 64;
    size_t unmapped = 0;  // bytes at the front already unmapped (migrating)

    size_t Home(uint64_t address) const {
      return static_cast<size_t>((address * 0x9E3779B97F4A7C15ull) >> shift);
    }
  };
  enum class Phase { kStable, kPreparing, kMigrating };

  // Maps a table of `capacity` slots, uninitialized.
  static Table Map(size_t capacity);
  static Table TableOf(IndexEntry* slots, size_t capacity);
  static void Unmap(Table& t);
  // Linear probe for `address` in `t`, wrapping; nullptr at an empty slot.
  static IndexEntry* Lookup(const Table& t, uint64_t address);
  // The first empty slot of `address`'s probe run in `t`, with the address set.
  static IndexEntry* Place(Table& t, uint64_t address);
  // Lookup in the old table, among the slots not moved yet.
  IndexEntry* LookupUnmoved(uint64_t address) const;

  // Does up to `fill` slots of preparing or `move` slots of migrating work.
  void Grow(size_t fill, size_t move);
  // Completes a growth in progress.
  void FinishGrowth();
  // Replaces the (stable) table by a fully built one of `capacity` slots
  // holding the entries that `keep` accepts.
  template <typename Keep>
  void Rebuild(size_t capacity, Keep keep);

  Table cur_;   // takes inserts; looked up first
  Table next_;  // preparing: being initialized
  Table old_;   // migrating: the previous table, slots [moved_, capacity) still live
  Phase phase_ = Phase::kStable;
  size_t filled_ = 0;  // preparing: slots of next_ initialized
  size_t moved_ = 0;   // migrating: slots of old_ moved into cur_
  size_t size_ = 0;    // entries, in both tables
  size_t grow_at_ = 0;
  Table spare_;                   // built ahead for the next growth, or empty
  bool spare_requested_ = false;  // TakeSpareRequest asked for one this growth
};

}  // namespace tally::log
