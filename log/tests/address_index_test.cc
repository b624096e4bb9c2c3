// AddressIndex: inserts, lookups and erasure against a reference map, for
// dense, strided, out-of-order and sparse addresses, and the pages they use.

#include "address_index.h"

#include <gtest/gtest.h>

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

constexpr uint64_t kPage = AddressIndex::kPageSlots;

TEST(AddressIndexTest, DenseAddressesFillPagesOfConsecutiveAddresses) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  const uint64_t base = uint64_t{7} << 40;
  const uint64_t n = 100'000;
  for (uint64_t a = base; a < base + n; ++a) Add(idx, ref, a);
  ExpectSame(idx, ref);
  EXPECT_EQ(idx.pages(), (n + kPage - 1) / kPage);
  // Without a helper the index mapped its chunks itself, as it needed them.
  EXPECT_EQ(idx.chunks(),
            (idx.pages() + AddressIndex::kChunkPages - 1) / AddressIndex::kChunkPages);
  EXPECT_EQ(idx.Find(base - 1), nullptr);
  EXPECT_EQ(idx.Find(base + n), nullptr);
  EXPECT_EQ(idx.Find(IndexEntry::kEmpty), nullptr);  // the empty-slot marker is never found
}

TEST(AddressIndexTest, OutOfOrderAndStridedInsertsShareTheirPages) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  // One stripe in three (a unit of one chain of three stripes), inserted in
  // descending order, then the gaps of one page filled in a scrambled order.
  const uint64_t n = 4000;
  for (uint64_t a = 3 * n; a > 0; a -= 3) Add(idx, ref, a);
  ExpectSame(idx, ref);
  EXPECT_EQ(idx.pages(), 3 * n / kPage + 1);
  for (uint64_t k = 0; k < kPage; ++k) {
    const uint64_t a = 2 * kPage + (k * 37) % kPage;  // a permutation of page 2
    if (ref.count(a) == 0) Add(idx, ref, a);
  }
  ExpectSame(idx, ref);
  for (uint64_t a = kPage; a < 4 * kPage; ++a) {
    const IndexEntry* e = idx.Find(a);
    ASSERT_EQ(e != nullptr, ref.count(a) == 1) << a;
    if (e != nullptr) {
      EXPECT_EQ(e->address, a);
    }
  }
}

TEST(AddressIndexTest, SparseAddressesCostAPageEach) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  for (uint64_t i = 0; i < 1000; ++i) Add(idx, ref, i * 1'000'003 + (i % 7));
  Add(idx, ref, IndexEntry::kEmpty - 1);  // the highest address there is
  ExpectSame(idx, ref);
  EXPECT_EQ(idx.pages(), 1001u);
}

TEST(AddressIndexTest, ErasedPagesAreReusedAndNeighboursKept) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  for (uint64_t a = 0; a < 4 * kPage; ++a) Add(idx, ref, a);
  ASSERT_EQ(idx.pages(), 4u);
  // Every other address of page 1, from its middle outwards.
  for (uint64_t k = 0; k < kPage / 2; ++k) {
    const uint64_t a = kPage + (k % 2 == 0 ? kPage / 2 + k : kPage / 2 - 1 - k);
    idx.Erase(a);
    ref.erase(a);
  }
  ExpectSame(idx, ref);
  const size_t ready = idx.ready_pages();
  for (uint64_t a = 2 * kPage; a < 3 * kPage; ++a) {
    idx.Erase(a);
    ref.erase(a);
  }
  EXPECT_EQ(idx.pages(), 3u);
  EXPECT_EQ(idx.ready_pages(), ready + 1) << "the emptied page is free for reuse";
  ExpectSame(idx, ref);
  // The emptied range takes entries again, on the freed page, which starts
  // out empty.
  Add(idx, ref, 2 * kPage + 5);
  EXPECT_EQ(idx.pages(), 4u);
  EXPECT_EQ(idx.ready_pages(), ready);
  ExpectSame(idx, ref);
  for (uint64_t a = 2 * kPage; a < 3 * kPage; ++a) {
    ASSERT_EQ(idx.Find(a) != nullptr, a == 2 * kPage + 5) << a;
  }
  const size_t chunks = idx.chunks();
  Add(idx, ref, 100 * kPage);  // a new page, from the chunk being drawn
  EXPECT_EQ(idx.chunks(), chunks);
}

TEST(AddressIndexTest, EraseBelowKeepsPendingEntriesAndWholePagesAbove) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  for (uint64_t a = 0; a < 5000; ++a) Add(idx, ref, a);
  // Pending entries below the mark survive (their writer still owns them).
  idx.Find(3)->Set(EntryState::kPending, 10);
  idx.Find(1000)->Set(EntryState::kPending, 10);
  const uint64_t mark = 2000;  // inside a page
  const size_t removed = idx.EraseBelow(mark);
  size_t expect_removed = 0;
  for (auto it = ref.begin(); it != ref.end();) {
    if (it->first < mark && it->first != 3 && it->first != 1000) {
      it = ref.erase(it);
      ++expect_removed;
    } else {
      ++it;
    }
  }
  EXPECT_EQ(removed, expect_removed);
  ExpectSame(idx, ref);
  EXPECT_EQ(idx.Find(1999), nullptr);
  EXPECT_NE(idx.Find(2000), nullptr);
  // Pages: the two holding 3 and 1000, and those from 2000's page on.
  EXPECT_EQ(idx.pages(), 2 + (5000 + kPage - 1) / kPage - 2000 / kPage);
  // Everything, as a wipe does.
  idx.Find(1000)->Set(EntryState::kDurable, 10);
  idx.Find(3)->Set(EntryState::kDurable, 10);
  EXPECT_EQ(idx.EraseBelow(IndexEntry::kEmpty), ref.size());
  EXPECT_EQ(idx.size(), 0u);
  EXPECT_EQ(idx.pages(), 0u);
  EXPECT_EQ(idx.Find(2000), nullptr);
  ref.clear();
  Add(idx, ref, 2000);
  ExpectSame(idx, ref);
}

TEST(AddressIndexTest, ChunksAreAskedForOnceAndUsedBeforeMappingMore) {
  AddressIndex idx;
  std::unordered_map<uint64_t, uint64_t> ref;
  // Empty: nothing ready, so it asks, once, until a chunk arrives.
  ASSERT_TRUE(idx.TakeChunkRequest());
  EXPECT_FALSE(idx.TakeChunkRequest());
  AddressIndex::Chunk chunk = AddressIndex::MapChunk();
  int slices = 1;
  while (!chunk.Touch(64 << 10)) ++slices;
  EXPECT_EQ(static_cast<size_t>(slices), AddressIndex::kChunkBytes / (64 << 10));
  idx.AddChunk(std::move(chunk));
  EXPECT_EQ(idx.chunks(), 1u);
  EXPECT_EQ(idx.ready_pages(), AddressIndex::kChunkPages);
  EXPECT_FALSE(idx.TakeChunkRequest()) << "a whole chunk is ready";
  // Filling the chunk's pages maps nothing more.
  uint64_t a = 0;
  while (idx.pages() < AddressIndex::kChunkPages / 2) Add(idx, ref, a++);
  EXPECT_EQ(idx.chunks(), 1u);
  ASSERT_TRUE(idx.TakeChunkRequest()) << "under a chunk of pages left";
  idx.AddChunk(AddressIndex::MapChunk());  // untouched: it faults as it is drawn
  while (idx.pages() < AddressIndex::kChunkPages + 10) Add(idx, ref, a++);
  EXPECT_EQ(idx.chunks(), 2u) << "the second chunk was drawn from, not a new one mapped";
  // A helper that failed to map hands back an empty chunk: the index asks
  // again later and maps inline meanwhile.
  ASSERT_TRUE(idx.TakeChunkRequest());
  idx.AddChunk(AddressIndex::Chunk());
  EXPECT_EQ(idx.chunks(), 2u);
  while (idx.pages() < 2 * AddressIndex::kChunkPages + 1) Add(idx, ref, a++);
  EXPECT_EQ(idx.chunks(), 3u);
  ExpectSame(idx, ref);
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
}

}  // namespace
}  // namespace tally::log
