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

// Inserts consecutive addresses from `*a` until the index starts a growth.
void AddUntilGrowing(AddressIndex& idx, std::unordered_map<uint64_t, uint64_t>& ref, uint64_t* a) {
  while (!idx.growing()) Add(idx, ref, (*a)++);
}

// Inserts until a growth in progress ends; returns how many inserts it took.
size_t AddUntilStable(AddressIndex& idx, std::unordered_map<uint64_t, uint64_t>& ref, uint64_t* a) {
  size_t n = 0;
  for (; idx.growing(); ++n) Add(idx, ref, (*a)++);
  return n;
}

TEST(AddressIndexTest, ASpareIsAskedForOnceAtHalfLoadAndSkipsPreparing) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  const size_t cap = idx.capacity();
  uint64_t a = 0;
  while (idx.size() + 1 < cap / 2) {
    Add(idx, ref, a++);
    ASSERT_EQ(idx.TakeSpareRequest(), 0u) << "asked early, at " << idx.size() << " entries";
  }
  Add(idx, ref, a++);
  ASSERT_EQ(idx.TakeSpareRequest(), cap * 2);
  EXPECT_EQ(idx.TakeSpareRequest(), 0u) << "asked twice for one growth";
  Add(idx, ref, a++);
  EXPECT_EQ(idx.TakeSpareRequest(), 0u);

  AddressIndex::Spare unused = idx.AddSpare(AddressIndex::PrepareSpare(cap * 2));
  EXPECT_EQ(unused.capacity(), 0u) << "a spare of the right size is kept";
  EXPECT_TRUE(idx.has_spare());
  AddUntilGrowing(idx, ref, &a);
  EXPECT_FALSE(idx.has_spare());
  EXPECT_EQ(idx.capacity(), cap * 2) << "with a spare, the growth migrates from its first insert";
  // Migrating alone moves C slots at kMovePerInsert per insert; preparing
  // incrementally would add (2C)/kFillPerInsert more.
  EXPECT_LE(AddUntilStable(idx, ref, &a), cap / AddressIndex::kMovePerInsert + 1);
  ExpectSame(idx, ref);
  // The next table asks again, at half of its own capacity.
  while (idx.size() < cap) Add(idx, ref, a++);
  EXPECT_EQ(idx.TakeSpareRequest(), cap * 4);
}

TEST(AddressIndexTest, ASpareIsFilledPieceByPieceAndOnlyTakenWhenFull) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  const size_t cap = idx.capacity();
  AddressIndex::Spare spare = AddressIndex::MapSpare(cap * 2);
  EXPECT_EQ(spare.filled_fraction(), 0.0);
  EXPECT_FALSE(spare.Fill(cap / 2));
  EXPECT_DOUBLE_EQ(spare.filled_fraction(), 0.25);
  // Half-built: not usable yet, so handed back.
  spare = idx.AddSpare(std::move(spare));
  EXPECT_EQ(spare.capacity(), cap * 2);
  EXPECT_FALSE(idx.has_spare());
  EXPECT_FALSE(spare.Fill(cap));
  EXPECT_TRUE(spare.Fill(cap));  // only the last quarter was left
  EXPECT_DOUBLE_EQ(spare.filled_fraction(), 1.0);
  EXPECT_EQ(idx.AddSpare(std::move(spare)).capacity(), 0u);
  ASSERT_TRUE(idx.has_spare());
  uint64_t a = 0;
  AddUntilGrowing(idx, ref, &a);
  EXPECT_EQ(idx.capacity(), cap * 2);
  EXPECT_LE(AddUntilStable(idx, ref, &a), cap / AddressIndex::kMovePerInsert + 1);
  ExpectSame(idx, ref);
}

TEST(AddressIndexTest, ALateSpareReplacesTheTableBeingPrepared) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  const size_t cap = idx.capacity();
  uint64_t a = 0;
  AddUntilGrowing(idx, ref, &a);
  ASSERT_EQ(idx.capacity(), cap) << "preparing: the old table still takes inserts";
  AddressIndex::Spare partial = idx.AddSpare(AddressIndex::PrepareSpare(cap * 2));
  EXPECT_EQ(partial.capacity(), cap * 2) << "the partly prepared table comes back to be freed";
  Add(idx, ref, a++);
  EXPECT_EQ(idx.capacity(), cap * 2) << "the next insert migrates into the spare";
  EXPECT_LE(AddUntilStable(idx, ref, &a), cap / AddressIndex::kMovePerInsert + 1);
  ExpectSame(idx, ref);
}

TEST(AddressIndexTest, ASpareThatNoLongerFitsIsReturnedAndGrowthStillWorks) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  const size_t cap = idx.capacity();
  uint64_t a = 0;
  AddressIndex::Spare wrong = idx.AddSpare(AddressIndex::PrepareSpare(cap * 4));
  EXPECT_EQ(wrong.capacity(), cap * 4);
  EXPECT_FALSE(idx.has_spare());

  // Held, then overtaken by a Reserve: dropped, and the growth after the
  // Reserve prepares its own table.
  EXPECT_EQ(idx.AddSpare(AddressIndex::PrepareSpare(cap * 2)).capacity(), 0u);
  ASSERT_TRUE(idx.has_spare());
  idx.Reserve(cap * 2);
  EXPECT_FALSE(idx.has_spare());
  const size_t reserved = idx.capacity();
  AddUntilGrowing(idx, ref, &a);
  EXPECT_GT(AddUntilStable(idx, ref, &a), reserved / AddressIndex::kMovePerInsert)
      << "without a spare the growth also prepares";
  EXPECT_EQ(idx.capacity(), reserved * 2);
  ExpectSame(idx, ref);

  // During a migration a spare is for no growth: returned.
  AddUntilGrowing(idx, ref, &a);
  Add(idx, ref, a++);
  while (idx.capacity() != reserved * 4) Add(idx, ref, a++);
  ASSERT_TRUE(idx.growing());
  EXPECT_EQ(idx.AddSpare(AddressIndex::PrepareSpare(reserved * 4)).capacity(), reserved * 4);
  AddUntilStable(idx, ref, &a);
  ExpectSame(idx, ref);
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
