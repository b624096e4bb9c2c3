// AddressIndex: lookups, erasure and incremental growth against a reference
// map, including lookups, updates and erasure while a growth is under way.

#include "address_index.h"

#include <gtest/gtest.h>

#include <bit>
#include <random>
#include <unordered_map>
#include <vector>

namespace tally::log {
namespace {

// Inserts `a` with offset `a * 3` and records it in `ref`.
void Add(AddressIndex& idx, std::unordered_map<uint64_t, uint64_t>& ref, uint64_t a) {
  ASSERT_EQ(idx.Find(a), nullptr) << a;
  IndexEntry* e = idx.Insert(a);
  ASSERT_NE(e, nullptr);
  ASSERT_EQ(e->address, a);
  EXPECT_EQ(e->offset, 0u);
  e->offset = a * 3;
  e->Set(EntryState::kDurable, 100);
  ref[a] = a * 3;
}

void ExpectSame(const AddressIndex& idx, const std::unordered_map<uint64_t, uint64_t>& ref) {
  ASSERT_EQ(idx.size(), ref.size());
  for (const auto& [a, off] : ref) {
    const IndexEntry* e = idx.Find(a);
    ASSERT_NE(e, nullptr) << a;
    ASSERT_EQ(e->address, a);
    ASSERT_EQ(e->offset, off) << a;
  }
}

TEST(AddressIndexTest, InsertFindErase) {
  AddressIndex idx;
  EXPECT_EQ(idx.Find(7), nullptr);
  idx.Insert(7)->offset = 70;
  idx.Insert(0)->offset = 1;
  ASSERT_NE(idx.Find(7), nullptr);
  EXPECT_EQ(idx.Find(7)->offset, 70u);
  EXPECT_EQ(idx.Find(0)->offset, 1u);
  EXPECT_EQ(idx.size(), 2u);
  idx.Erase(7);
  idx.Erase(8);  // absent: no-op
  EXPECT_EQ(idx.Find(7), nullptr);
  EXPECT_EQ(idx.size(), 1u);
}

TEST(AddressIndexTest, GrowsInStepsAndKeepsEveryEntry) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  const size_t first = idx.capacity();
  size_t growing_inserts = 0;
  uint64_t a = 0;
  // Three doublings.
  while (idx.capacity() < first * 8 || idx.growing()) {
    Add(idx, ref, a);
    // The entry just inserted, and one inserted long before, stay visible
    // whatever the phase.
    ASSERT_NE(idx.Find(a), nullptr);
    ASSERT_EQ(idx.Find(a / 2)->offset, (a / 2) * 3);
    growing_inserts += idx.growing();
    ++a;
  }
  ExpectSame(idx, ref);
  // The work is spread: each doubling of a table of C slots spans at least
  // C/32 + C/16 inserts (C = first, 2 first, 4 first).
  EXPECT_GE(growing_inserts, 7 * first * 3 / 32 - 8);
}

TEST(AddressIndexTest, UpdatesThroughFindDuringGrowthPersist) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  uint64_t a = 0;
  while (!idx.growing()) Add(idx, ref, a++);
  // Through preparing and migrating: rewrite old entries as we go.
  while (idx.growing()) {
    Add(idx, ref, a);
    const uint64_t old = (a * 7919) % a;
    IndexEntry* e = idx.Find(old);
    ASSERT_NE(e, nullptr) << old;
    e->offset = old + 1'000'000;
    ref[old] = old + 1'000'000;
    ++a;
  }
  ExpectSame(idx, ref);
}

TEST(AddressIndexTest, ProbeRunsThatWrapStayVisibleWhileMigrating) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  const size_t cap = idx.capacity();
  const int shift = 64 - std::countr_zero(cap);
  // 64 keys whose home is the last slot: their run wraps to the front,
  // which migration moves first.
  std::vector<uint64_t> wrapped;
  for (uint64_t a = uint64_t{1} << 30; wrapped.size() < 64; ++a) {
    if (((a * 0x9E3779B97F4A7C15ull) >> shift) == cap - 1) wrapped.push_back(a);
  }
  for (uint64_t a : wrapped) Add(idx, ref, a);
  uint64_t a = 0;
  bool migrated = false;
  while (!migrated || idx.growing()) {
    Add(idx, ref, a++);
    migrated |= idx.capacity() != cap;
    for (uint64_t w : wrapped) {
      const IndexEntry* e = idx.Find(w);
      ASSERT_NE(e, nullptr) << "key " << w << " after " << a << " inserts";
      ASSERT_EQ(e->offset, w * 3);
    }
  }
  ExpectSame(idx, ref);
}

TEST(AddressIndexTest, EraseAndEraseBelowDuringGrowth) {
  for (int when = 0; when < 2; ++when) {
    AddressIndex idx;
    std::unordered_map<uint64_t, uint64_t> ref;
    uint64_t a = 0;
    while (!idx.growing()) Add(idx, ref, a++);
    if (when == 1) {  // into the migrating phase
      const size_t cap = idx.capacity();
      while (idx.capacity() == cap) Add(idx, ref, a++);
      ASSERT_TRUE(idx.growing());
    }
    idx.Erase(5);
    ref.erase(5);
    EXPECT_FALSE(idx.growing());
    ExpectSame(idx, ref);
    while (!idx.growing()) Add(idx, ref, a++);
    const uint64_t mark = a / 2;
    // Pending entries below the mark survive.
    idx.Find(3)->Set(EntryState::kPending, 10);
    const size_t removed = idx.EraseBelow(mark);
    size_t expect_removed = 0;
    for (auto it = ref.begin(); it != ref.end();) {
      if (it->first < mark && it->first != 3) {
        it = ref.erase(it);
        ++expect_removed;
      } else {
        ++it;
      }
    }
    EXPECT_EQ(removed, expect_removed);
    EXPECT_FALSE(idx.growing());
    ExpectSame(idx, ref);
  }
}

TEST(AddressIndexTest, RandomOperationsMatchAMap) {
  std::mt19937_64 rng(42);
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  uint64_t next = uint64_t{1} << 40;  // sparse and dense ranges mixed
  for (int i = 0; i < 300'000; ++i) {
    const int op = static_cast<int>(rng() % 100);
    if (op < 80) {
      const uint64_t a = op < 60 ? next++ : rng() % (uint64_t{1} << 20);
      if (ref.count(a) == 0) Add(idx, ref, a);
    } else if (op < 99) {
      const uint64_t a = op < 90 ? next - 1 - rng() % 1000 : rng() % (uint64_t{1} << 20);
      const IndexEntry* e = idx.Find(a);
      auto it = ref.find(a);
      ASSERT_EQ(e != nullptr, it != ref.end()) << a;
      if (e != nullptr) {
        ASSERT_EQ(e->offset, it->second);
      }
    } else {
      const uint64_t a = next - 1 - rng() % 1000;
      idx.Erase(a);
      ref.erase(a);
    }
  }
  ExpectSame(idx, ref);
  idx.Reserve(idx.size() * 4);
  EXPECT_FALSE(idx.growing());
  ExpectSame(idx, ref);
}

}  // namespace
}  // namespace tally::log
