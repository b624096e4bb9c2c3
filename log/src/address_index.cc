#include "address_index.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdint>
#include <new>
#include <utility>

namespace tally::log {

namespace {
constexpr size_t kTouchStride = 4096;
}  // namespace

AddressIndex::~AddressIndex() = default;  // chunks_ unmap themselves

AddressIndex::Chunk& AddressIndex::Chunk::operator=(Chunk&& o) noexcept {
  if (this != &o) {
    Chunk dropped(std::move(*this));
    base_ = std::exchange(o.base_, nullptr);
    touched_ = std::exchange(o.touched_, 0);
  }
  return *this;
}

AddressIndex::Chunk::~Chunk() {
  if (base_ != nullptr) munmap(base_, kChunkBytes);
}

AddressIndex::Chunk AddressIndex::MapChunk() {
  static_assert(sizeof(Page) == kPageSlots * sizeof(IndexEntry));
  void* p = mmap(nullptr, kChunkBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // 4 KiB pages on purpose: a 2 MiB huge page is faulted (and zeroed) in one
  // go, which is the burst the slices avoid.
  (void)madvise(p, kChunkBytes, MADV_NOHUGEPAGE);
  Chunk c;
  c.base_ = static_cast<char*>(p);
  return c;
}

bool AddressIndex::Chunk::Touch(size_t bytes) {
  const size_t end = std::min(kChunkBytes, touched_ + bytes);
  for (; touched_ < end; touched_ += kTouchStride) {
    *static_cast<volatile char*>(base_ + touched_) = 0;
  }
  touched_ = end;
  return touched_ == kChunkBytes;
}

bool AddressIndex::TakeChunkRequest() {
  if (chunk_requested_ || ready_pages() >= kChunkPages) return false;
  chunk_requested_ = true;
  return true;
}

void AddressIndex::AddChunk(Chunk chunk) {
  chunk_requested_ = false;
  if (!chunk.empty()) chunks_.push_back(std::move(chunk));
}

size_t AddressIndex::ready_pages() const {
  return free_.size() + static_cast<size_t>(chunk_end_ - chunk_next_) +
         (chunks_.size() - drawn_) * kChunkPages;
}

AddressIndex::Page* AddressIndex::NewPage() {
  Page* page = nullptr;
  if (!free_.empty()) {
    page = free_.back();
    free_.pop_back();
  } else {
    if (chunk_next_ == chunk_end_) {
      if (drawn_ == chunks_.size()) chunks_.push_back(MapChunk());  // none ready: map inline
      chunk_next_ = reinterpret_cast<Page*>(chunks_[drawn_].base_);
      chunk_end_ = chunk_next_ + kChunkPages;
      ++drawn_;
    }
    page = chunk_next_++;
  }
  for (IndexEntry& e : page->slots) e = IndexEntry{};
  return page;
}

void AddressIndex::FreePage(uint64_t key) {
  auto it = pages_.find(key);
  free_.push_back(it->second.page);
  pages_.erase(it);
  last_ = nullptr;
}

AddressIndex::PageRef* AddressIndex::RefOf(uint64_t address) {
  const uint64_t key = address >> kPageBits;
  if (last_ != nullptr && last_key_ == key) return last_;
  auto it = pages_.find(key);
  if (it == pages_.end()) return nullptr;
  last_ = &it->second;
  last_key_ = key;
  return last_;
}

const AddressIndex::PageRef* AddressIndex::RefOf(uint64_t address) const {
  // No cache update: const lookups leave the index untouched.
  const uint64_t key = address >> kPageBits;
  if (last_ != nullptr && last_key_ == key) return last_;
  auto it = pages_.find(key);
  return it == pages_.end() ? nullptr : &it->second;
}

IndexEntry* AddressIndex::Find(uint64_t address) {
  return const_cast<IndexEntry*>(std::as_const(*this).Find(address));
}

const IndexEntry* AddressIndex::Find(uint64_t address) const {
  if (address == IndexEntry::kEmpty) return nullptr;  // it marks empty slots
  const PageRef* ref = RefOf(address);
  if (ref == nullptr) return nullptr;
  const IndexEntry* e = &ref->page->slots[address & (kPageSlots - 1)];
  return e->address == address ? e : nullptr;
}

IndexEntry* AddressIndex::Insert(uint64_t address) {
  PageRef* ref = RefOf(address);
  if (ref == nullptr) {
    Page* page = NewPage();
    const uint64_t key = address >> kPageBits;
    ref = &pages_[key];
    ref->page = page;
    last_ = ref;
    last_key_ = key;
  }
  IndexEntry* e = &ref->page->slots[address & (kPageSlots - 1)];
  *e = IndexEntry{};
  e->address = address;
  ++ref->used;
  ++size_;
  return e;
}

void AddressIndex::Erase(uint64_t address) {
  if (address == IndexEntry::kEmpty) return;
  PageRef* ref = RefOf(address);
  if (ref == nullptr) return;
  IndexEntry* e = &ref->page->slots[address & (kPageSlots - 1)];
  if (e->address != address) return;
  *e = IndexEntry{};
  --size_;
  if (--ref->used == 0) FreePage(address >> kPageBits);
}

size_t AddressIndex::EraseBelow(uint64_t mark) {
  size_t removed = 0;
  for (auto it = pages_.begin(); it != pages_.end();) {
    PageRef& ref = it->second;
    if ((it->first << kPageBits) >= mark) {  // wholly at or above the mark
      ++it;
      continue;
    }
    for (IndexEntry& e : ref.page->slots) {
      if (e.address == IndexEntry::kEmpty || e.address >= mark ||
          e.state() == EntryState::kPending) {
        continue;
      }
      e = IndexEntry{};
      --ref.used;
      ++removed;
    }
    if (ref.used == 0) {
      free_.push_back(ref.page);
      it = pages_.erase(it);
    } else {
      ++it;
    }
  }
  size_ -= removed;
  last_ = nullptr;
  return removed;
}

}  // namespace tally::log
