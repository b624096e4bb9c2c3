#include "address_index.h"

#include <bit>
#include <utility>

namespace tally::log {

namespace {
constexpr size_t kMinCapacity = 1 << 12;
}

AddressIndex::AddressIndex() { Rehash(kMinCapacity); }

IndexEntry* AddressIndex::Find(uint64_t address) {
  return const_cast<IndexEntry*>(std::as_const(*this).Find(address));
}

const IndexEntry* AddressIndex::Find(uint64_t address) const {
  for (size_t i = Home(address);; i = (i + 1) & mask_) {
    const IndexEntry& e = slots_[i];
    if (e.address == address) return &e;
    if (e.address == IndexEntry::kEmpty) return nullptr;
  }
}

IndexEntry* AddressIndex::Insert(uint64_t address) {
  if (size_ + 1 > grow_at_) Rehash(slots_.size() * 2);
  size_t i = Home(address);
  while (slots_[i].address != IndexEntry::kEmpty) i = (i + 1) & mask_;
  slots_[i] = IndexEntry{};
  slots_[i].address = address;
  ++size_;
  return &slots_[i];
}

void AddressIndex::Erase(uint64_t address) {
  size_t i = Home(address);
  while (slots_[i].address != address) {
    if (slots_[i].address == IndexEntry::kEmpty) return;
    i = (i + 1) & mask_;
  }
  // Backward-shift deletion: pull later members of the probe run into the
  // hole unless their home lies cyclically in (hole, their slot].
  size_t hole = i;
  for (size_t j = (hole + 1) & mask_;; j = (j + 1) & mask_) {
    if (slots_[j].address == IndexEntry::kEmpty) break;
    size_t home = Home(slots_[j].address);
    bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    slots_[hole] = slots_[j];
    hole = j;
  }
  slots_[hole] = IndexEntry{};
  --size_;
}

size_t AddressIndex::EraseBelow(uint64_t mark) {
  auto keep = [mark](const IndexEntry& e) {
    return e.address != IndexEntry::kEmpty &&
           (e.address >= mark || e.state() == EntryState::kPending);
  };
  const size_t before = size_;
  std::vector<IndexEntry> old;
  old.swap(slots_);
  size_t kept = 0;
  for (const IndexEntry& e : old) kept += keep(e);
  size_t capacity = kMinCapacity;
  while (kept * 8 > capacity * 5) capacity *= 2;
  slots_.assign(capacity, IndexEntry{});
  mask_ = capacity - 1;
  shift_ = 64 - std::countr_zero(capacity);
  grow_at_ = capacity / 8 * 5;
  size_ = 0;
  for (const IndexEntry& e : old) {
    if (keep(e)) *Insert(e.address) = e;
  }
  return before - size_;
}

void AddressIndex::Reserve(size_t n) {
  size_t capacity = slots_.size();
  while (n * 8 > capacity * 5) capacity *= 2;
  if (capacity != slots_.size()) Rehash(capacity);
}

void AddressIndex::Rehash(size_t new_capacity) {
  std::vector<IndexEntry> old(new_capacity, IndexEntry{});
  old.swap(slots_);
  mask_ = new_capacity - 1;
  shift_ = 64 - std::countr_zero(new_capacity);
  grow_at_ = new_capacity / 8 * 5;
  size_ = 0;
  // Home slots grow monotonically with the old slot order (except for runs
  // that wrapped around), so these inserts touch the new array in order.
  for (const IndexEntry& e : old) {
    if (e.address == IndexEntry::kEmpty) continue;
    size_t i = Home(e.address);
    while (slots_[i].address != IndexEntry::kEmpty) i = (i + 1) & mask_;
    slots_[i] = e;
    ++size_;
  }
}

}  // namespace tally::log
