#include "address_index.h"

#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <memory>
#include <new>
#include <utility>

namespace tally::log {

namespace {
constexpr size_t kMinCapacity = 1 << 12;
// The old table is unmapped in pieces of this size as migration passes them.
constexpr size_t kUnmapBytes = size_t{1} << 20;
// Preparing must end before this load; a growth never reaches it at the
// rates above (5/8 + 2/kFillPerInsert), it only bounds probe runs for sure.
constexpr size_t kMaxLoadNum = 3, kMaxLoadDen = 4;
}  // namespace

AddressIndex::AddressIndex() {
  cur_ = Map(kMinCapacity);
  std::uninitialized_fill_n(cur_.slots, cur_.capacity, IndexEntry{});
  grow_at_ = cur_.capacity / 8 * 5;
}

AddressIndex::~AddressIndex() {
  Unmap(cur_);
  Unmap(next_);
  Unmap(old_);
}

AddressIndex::Table AddressIndex::Map(size_t capacity) {
  void* p = mmap(nullptr, capacity * sizeof(IndexEntry), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  Table t;
  t.slots = static_cast<IndexEntry*>(p);
  t.capacity = capacity;
  t.mask = capacity - 1;
  t.shift = 64 - std::countr_zero(capacity);
  return t;
}

void AddressIndex::Unmap(Table& t) {
  if (t.slots != nullptr) {
    const size_t bytes = t.capacity * sizeof(IndexEntry);
    munmap(reinterpret_cast<char*>(t.slots) + t.unmapped, bytes - t.unmapped);
  }
  t = Table{};
}

IndexEntry* AddressIndex::Lookup(const Table& t, uint64_t address) {
  for (size_t i = t.Home(address);; i = (i + 1) & t.mask) {
    IndexEntry& e = t.slots[i];
    if (e.address == address) return &e;
    if (e.address == IndexEntry::kEmpty) return nullptr;
  }
}

IndexEntry* AddressIndex::Place(Table& t, uint64_t address) {
  size_t i = t.Home(address);
  while (t.slots[i].address != IndexEntry::kEmpty) i = (i + 1) & t.mask;
  t.slots[i].address = address;
  return &t.slots[i];
}

IndexEntry* AddressIndex::LookupUnmoved(uint64_t address) const {
  // old_ is not modified while migrating, so its probe runs are intact. An
  // unmoved entry sits at a slot s >= moved_, and every slot from its home
  // to s (wrapping) is occupied. Slots below moved_ are never read: they may
  // be unmapped already. So scan from max(home, moved_) to the end, then,
  // for runs that wrap, from moved_ on.
  const size_t home = old_.Home(address);
  const size_t start = std::max(home, moved_);
  for (size_t i = start; i < old_.capacity; ++i) {
    IndexEntry& e = old_.slots[i];
    if (e.address == address) return &e;
    if (e.address == IndexEntry::kEmpty) return nullptr;
  }
  for (size_t i = moved_; i < start; ++i) {
    IndexEntry& e = old_.slots[i];
    if (e.address == address) return &e;
    if (e.address == IndexEntry::kEmpty) return nullptr;
  }
  return nullptr;
}

IndexEntry* AddressIndex::Find(uint64_t address) {
  return const_cast<IndexEntry*>(std::as_const(*this).Find(address));
}

const IndexEntry* AddressIndex::Find(uint64_t address) const {
  if (IndexEntry* e = Lookup(cur_, address)) return e;
  if (phase_ == Phase::kMigrating) return LookupUnmoved(address);
  return nullptr;
}

IndexEntry* AddressIndex::Insert(uint64_t address) {
  if (phase_ == Phase::kStable && size_ + 1 > grow_at_) {
    next_ = Map(cur_.capacity * 2);
    filled_ = 0;
    phase_ = Phase::kPreparing;
  }
  if (phase_ == Phase::kPreparing && (size_ + 1) * kMaxLoadDen > cur_.capacity * kMaxLoadNum) {
    Grow(SIZE_MAX, 0);  // safety net only: finish preparing now
  }
  if (phase_ != Phase::kStable) Grow(kFillPerInsert, kMovePerInsert);
  IndexEntry* e = Place(cur_, address);
  *e = IndexEntry{};
  e->address = address;
  ++size_;
  return e;
}

void AddressIndex::Grow(size_t fill, size_t move) {
  if (phase_ == Phase::kPreparing) {
    const size_t n = std::min(fill, next_.capacity - filled_);
    std::uninitialized_fill_n(next_.slots + filled_, n, IndexEntry{});
    filled_ += n;
    if (filled_ < next_.capacity) return;
    old_ = std::exchange(cur_, std::exchange(next_, Table{}));
    grow_at_ = cur_.capacity / 8 * 5;
    moved_ = 0;
    phase_ = Phase::kMigrating;
    return;  // the moving starts with the next Insert
  }
  if (phase_ != Phase::kMigrating) return;
  const size_t end = move >= old_.capacity - moved_ ? old_.capacity : moved_ + move;
  // Top-bit hashing keeps home slots in slot order, so these placements
  // walk the new table forward.
  for (size_t i = moved_; i < end; ++i) {
    const IndexEntry& e = old_.slots[i];
    if (e.address != IndexEntry::kEmpty) *Place(cur_, e.address) = e;
  }
  moved_ = end;
  if (moved_ == old_.capacity) {
    Unmap(old_);
    moved_ = 0;
    phase_ = Phase::kStable;
    return;
  }
  // Give back the pages wholly behind moved_, a piece at a time.
  const size_t behind = moved_ * sizeof(IndexEntry);
  while (behind - old_.unmapped >= kUnmapBytes) {
    munmap(reinterpret_cast<char*>(old_.slots) + old_.unmapped, kUnmapBytes);
    old_.unmapped += kUnmapBytes;
  }
}

void AddressIndex::FinishGrowth() {
  while (phase_ != Phase::kStable) Grow(SIZE_MAX, SIZE_MAX);
}

void AddressIndex::Erase(uint64_t address) {
  FinishGrowth();  // backward shifts must not move entries across moved_
  Table& t = cur_;
  size_t i = t.Home(address);
  while (t.slots[i].address != address) {
    if (t.slots[i].address == IndexEntry::kEmpty) return;
    i = (i + 1) & t.mask;
  }
  // Backward-shift deletion: pull later members of the probe run into the
  // hole unless their home lies cyclically in (hole, their slot].
  size_t hole = i;
  for (size_t j = (hole + 1) & t.mask;; j = (j + 1) & t.mask) {
    if (t.slots[j].address == IndexEntry::kEmpty) break;
    size_t home = t.Home(t.slots[j].address);
    bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    t.slots[hole] = t.slots[j];
    hole = j;
  }
  t.slots[hole] = IndexEntry{};
  --size_;
}

template <typename Keep>
void AddressIndex::Rebuild(size_t capacity, Keep keep) {
  Table fresh = Map(capacity);
  std::uninitialized_fill_n(fresh.slots, fresh.capacity, IndexEntry{});
  size_t kept = 0;
  for (size_t i = 0; i < cur_.capacity; ++i) {
    const IndexEntry& e = cur_.slots[i];
    if (e.address == IndexEntry::kEmpty || !keep(e)) continue;
    *Place(fresh, e.address) = e;
    ++kept;
  }
  Unmap(cur_);
  cur_ = fresh;
  size_ = kept;
  grow_at_ = cur_.capacity / 8 * 5;
}

size_t AddressIndex::EraseBelow(uint64_t mark) {
  FinishGrowth();
  auto keep = [mark](const IndexEntry& e) {
    return e.address >= mark || e.state() == EntryState::kPending;
  };
  const size_t before = size_;
  size_t kept = 0;
  for (size_t i = 0; i < cur_.capacity; ++i) {
    const IndexEntry& e = cur_.slots[i];
    kept += e.address != IndexEntry::kEmpty && keep(e);
  }
  size_t capacity = kMinCapacity;
  while (kept * 8 > capacity * 5) capacity *= 2;
  Rebuild(capacity, keep);
  return before - size_;
}

void AddressIndex::Reserve(size_t n) {
  FinishGrowth();
  size_t capacity = cur_.capacity;
  while (n * 8 > capacity * 5) capacity *= 2;
  if (capacity != cur_.capacity) Rebuild(capacity, [](const IndexEntry&) { return true; });
}

}  // namespace tally::log
