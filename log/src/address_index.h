#pragma once

// Private: the in-memory map from address to where its record lives.
//
// Addresses come from the sequencer, densely: a unit holds every address of
// its chains' stripes, mostly in long increasing runs. So the index is a hash
// map of pages, one per 64 consecutive addresses (address >> 6) holding any
// entry; a page is an array of 64 slots (2 KiB), one per address of its
// range, empty ones marked by kEmpty. A unit holding every address pays ~32
// bytes per entry, one holding one stripe in S up to 32 * S, an isolated
// address a whole page. The page used last is remembered, so a batch of
// consecutive addresses looks its page up once per 64.
//
// Pages come from 2 MiB chunks (1,024 pages) of their own mapping, and a
// freed page (its last entry erased or trimmed) is reused. Fresh memory is
// what costs here: on a VM whose host backs each page lazily, a first touch
// took ~1 ms per MiB. Page faults under the store's mutex (one per 128
// inserts, when pages came from malloc) raised append_bench's 100k/s p50 by
// 1-2 ms; a whole chunk faulted in at once (one 2 MiB huge page) on the
// three units of a chain put a 15-20 ms spike in the p99 every chunk. So
// chunks are faulted in ahead and a slice at a time: TakeChunkRequest() says
// when fewer than a chunk of pages is left, MapChunk() maps one (no faults
// yet), Chunk::Touch() faults in the next slice of it, off the lock, and
// AddChunk() hands it over. An Insert that finds no page ready (no helper,
// or it is late) maps a chunk itself and faults as it goes.
//
// It replaced an open-addressing table that doubled at 5/8 load (51-85 bytes
// per entry), each next table built ahead by an idle-priority thread: each
// doubling still asked for twice the table in fresh memory at once, ~4 s of
// CPU on each unit of a chain at 8M slots (docs/log-format.md).
//
// Not thread-safe: SegmentStore guards it with its mutex (MapChunk aside).

#include <cstddef>
#include <cstdint>
#include <unordered_map>
#include <utility>
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
  // Addresses per page, and pages per chunk.
  static constexpr int kPageBits = 6;
  static constexpr uint64_t kPageSlots = uint64_t{1} << kPageBits;
  static constexpr size_t kChunkPages = 1024;

  AddressIndex() = default;
  ~AddressIndex();
  AddressIndex(const AddressIndex&) = delete;
  AddressIndex& operator=(const AddressIndex&) = delete;

  // The entry for `address`, or nullptr. Valid until the next Erase (pages never move).
  IndexEntry* Find(uint64_t address);
  const IndexEntry* Find(uint64_t address) const;

  // Adds an entry for `address`, which must be absent and != kEmpty; returns
  // it with only `address` set. Valid until the next Erase.
  IndexEntry* Insert(uint64_t address);

  // Removes `address` if present.
  void Erase(uint64_t address);

  // Removes every entry with address < mark except pending ones (their
  // writer still owns them). Returns how many it removed.
  size_t EraseBelow(uint64_t mark);

  // A chunk of pages, mapped (and faulted in) ahead of need.
  class Chunk {
   public:
    Chunk() = default;
    Chunk(Chunk&& o) noexcept
        : base_(std::exchange(o.base_, nullptr)), touched_(std::exchange(o.touched_, 0)) {}
    Chunk& operator=(Chunk&& o) noexcept;
    ~Chunk();
    bool empty() const { return base_ == nullptr; }
    // Faults in up to `bytes` more of the chunk; true once all of it is.
    // Thread-safe against the index (the chunk is not handed over yet).
    bool Touch(size_t bytes);

   private:
    friend class AddressIndex;
    char* base_ = nullptr;  // kChunkBytes
    size_t touched_ = 0;
  };
  // True once when fewer than a chunk of pages is ready: the caller should
  // MapChunk() and AddChunk() it. Asks again only after AddChunk.
  bool TakeChunkRequest();
  // Maps a chunk, untouched. Thread-safe; throws std::bad_alloc when the
  // memory cannot be mapped.
  static Chunk MapChunk();
  static constexpr size_t kChunkBytes = kChunkPages * kPageSlots * sizeof(IndexEntry);
  void AddChunk(Chunk chunk);

  size_t size() const { return size_; }
  // Pages holding at least one entry.
  size_t pages() const { return pages_.size(); }
  // Chunks mapped, in use or ready.
  size_t chunks() const { return chunks_.size(); }
  // Pages ready for use (free, or in chunks not yet drawn from).
  size_t ready_pages() const;

 private:
  struct Page {
    IndexEntry slots[kPageSlots];
  };
  struct PageRef {
    Page* page = nullptr;
    uint32_t used = 0;  // slots holding an entry
  };

  PageRef* RefOf(uint64_t address);
  const PageRef* RefOf(uint64_t address) const;
  Page* NewPage();
  void FreePage(uint64_t key);

  std::unordered_map<uint64_t, PageRef> pages_;
  // The page used last (nodes of pages_ stay put), or nullptr.
  PageRef* last_ = nullptr;
  uint64_t last_key_ = 0;
  size_t size_ = 0;
  std::vector<Chunk> chunks_;   // every chunk mapped; the last ones not drawn from yet
  size_t drawn_ = 0;            // chunks_[0, drawn_) handed out pages
  Page* chunk_next_ = nullptr;  // the rest of the chunk being drawn from
  Page* chunk_end_ = nullptr;
  std::vector<Page*> free_;  // pages whose entries were all erased
  bool chunk_requested_ = false;
};

}  // namespace tally::log
