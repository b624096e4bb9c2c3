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
// The old table is unmapped in pieces of this size as migration passes them
// (one transparent huge page).
constexpr size_t kUnmapBytes = size_t{2} << 20;
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
  Unmap(spare_);
}

AddressIndex::Spare::Spare(Spare&& o) noexcept
    : slots_(std::exchange(o.slots_, nullptr)),
      capacity_(std::exchange(o.capacity_, 0)),
      filled_(std::exchange(o.filled_, 0)) {}

AddressIndex::Spare& AddressIndex::Spare::operator=(Spare&& o) noexcept {
  if (this != &o) {
    Spare dropped(std::move(*this));
    slots_ = std::exchange(o.slots_, nullptr);
    capacity_ = std::exchange(o.capacity_, 0);
    filled_ = std::exchange(o.filled_, 0);
  }
  return *this;
}

AddressIndex::Spare::~Spare() {
  if (slots_ != nullptr) munmap(slots_, capacity_ * sizeof(IndexEntry));
}

size_t AddressIndex::TakeSpareRequest() {
  if (spare_requested_ || spare_.slots != nullptr || phase_ != Phase::kStable ||
      size_ < cur_.capacity / 2) {
    return 0;
  }
  spare_requested_ = true;
  return cur_.capacity * 2;
}

bool AddressIndex::Spare::Fill(size_t slots) {
  const size_t n = std::min(slots, capacity_ - filled_);
  std::uninitialized_fill_n(slots_ + filled_, n, IndexEntry{});
  filled_ += n;
  return filled_ == capacity_;
}

double AddressIndex::Spare::filled_fraction() const {
  return capacity_ == 0 ? 0 : static_cast<double>(filled_) / static_cast<double>(capacity_);
}

AddressIndex::Spare AddressIndex::MapSpare(size_t capacity) {
  Table t = Map(capacity);
  Spare s;
  s.slots_ = t.slots;
  s.capacity_ = t.capacity;
  return s;
}

AddressIndex::Spare AddressIndex::PrepareSpare(size_t capacity) {
  Spare s = MapSpare(capacity);
  s.Fill(capacity);
  return s;
}

AddressIndex::Spare AddressIndex::AddSpare(Spare spare) {
  spare_requested_ = false;
  // Sized for the growth from the current table, and not yet overtaken by it.
  if (spare.slots_ == nullptr || spare.filled_ != spare.capacity_ ||
      spare.capacity_ != cur_.capacity * 2 || phase_ == Phase::kMigrating) {
    return spare;
  }
  Table t = TableOf(std::exchange(spare.slots_, nullptr), std::exchange(spare.capacity_, 0));
  if (phase_ == Phase::kStable) {
    Unmap(spare_);
    spare_ = t;
    return Spare();
  }
  // Late: the growth is preparing its table incrementally. Take the ready
  // one instead; the next Insert starts migrating.
  Spare partial;
  partial.slots_ = next_.slots;
  partial.capacity_ = next_.capacity;
  next_ = t;
  filled_ = next_.capacity;
  return partial;
}

AddressIndex::Table AddressIndex::TableOf(IndexEntry* slots, size_t capacity) {
  Table t;
  t.slots = slots;
  t.capacity = capacity;
  t.mask = capacity - 1;
  t.shift = 64 - std::countr_zero(capacity);
  return t;
}

AddressIndex::Table AddressIndex::Map(size_t capacity) {
  void* p = mmap(nullptr, capacity * sizeof(IndexEntry), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  // Advice only: where transparent huge pages are off, 4 KiB pages serve.
  if (capacity * sizeof(IndexEntry) >= kUnmapBytes) {
    (void)madvise(p, capacity * sizeof(IndexEntry), MADV_HUGEPAGE);
  }
  return TableOf(static_cast<IndexEntry*>(p), capacity);
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
    spare_requested_ = false;
    if (spare_.slots != nullptr && spare_.capacity == cur_.capacity * 2) {
      next_ = std::exchange(spare_, Table{});  // built ahead: migrate at once
      filled_ = next_.capacity;
    } else {
      Unmap(spare_);
      next_ = Map(cur_.capacity * 2);
      filled_ = 0;
    }
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
  if (spare_.capacity != fresh.capacity * 2) Unmap(spare_);
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
