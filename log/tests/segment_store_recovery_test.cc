// Crash recovery: power cuts, torn writes, bit flips, truncated files and
// failing disks, modelled with FaultInjectionFileSystem over MemFileSystem.

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "record_format.h"
#include "segment_store_test_util.h"

namespace tally::log {
namespace {

using testing::AppendAndWait;
using testing::MakeRecord;
using testing::PayloadFor;

constexpr size_t kPayload = 40;
constexpr uint64_t kRecordSize = format::kHeaderSize + kPayload;  // no streams

class RecoveryTest : public testing::StoreFixture {
 protected:
  // Appends [from, to) with fixed-size payloads, all acknowledged.
  void Fill(SegmentStore& store, uint64_t from, uint64_t to) {
    std::vector<Record> batch;
    for (uint64_t i = from; i < to; ++i) batch.push_back(MakeRecord(i, PayloadFor(i, kPayload)));
    for (const Status& s : AppendAndWait(store, std::move(batch)))
      ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Writes [from, to) to the end of segment `id` the way an in-flight group
  // would: whole records, not synced.
  void WriteUnsynced(uint32_t id, uint64_t from, uint64_t to) {
    std::string bytes;
    for (uint64_t i = from; i < to; ++i) {
      Record r = MakeRecord(i, PayloadFor(i, kPayload));
      std::string one(format::EncodedSize(r), '\0');
      format::EncodeRecord(r, one.data());
      bytes += one;
    }
    auto f = fault_.Open(SegmentPath(id), OpenOptions{});
    ASSERT_TRUE(f.ok());
    uint64_t size = *(*f)->Size();
    ConstBuffer buf(bytes.data(), bytes.size());
    ASSERT_TRUE((*f)->Write(size, std::span<const ConstBuffer>(&buf, 1), false).ok());
  }

  void ExpectReadable(SegmentStore& store, uint64_t from, uint64_t to) {
    for (uint64_t i = from; i < to; ++i) {
      auto r = store.Read(Address(i));
      ASSERT_TRUE(r.ok()) << "address " << i << ": " << r.status().ToString();
      ASSERT_EQ(r->payload, PayloadFor(i, kPayload));
    }
  }
};

TEST_F(RecoveryTest, PowerCutKeepsAcknowledgedAndDropsTheRest) {
  {
    auto store = OpenStore();
    Fill(*store, 0, 100);
  }
  WriteUnsynced(1, 100, 110);  // a group that was written but whose sync never finished
  ASSERT_TRUE(fault_.DropUnsyncedData().ok());

  RecoveryReport report;
  auto store = OpenStore(&report);
  EXPECT_EQ(report.records, 100u);
  EXPECT_EQ(report.corrupt_records, 0u);
  EXPECT_EQ(report.torn_bytes_dropped, 0u);
  ExpectReadable(*store, 0, 100);
  EXPECT_EQ(store->Read(Address(100)).status().code(), Code::kUnwritten);
  EXPECT_TRUE(store->AppendSync(MakeRecord(100, PayloadFor(100, kPayload))).ok());
}

TEST_F(RecoveryTest, PowerCutWhileOpenKeepsAcknowledged) {
  auto store = OpenStore();
  Fill(*store, 0, 300);
  store->Flush();
  ASSERT_TRUE(fault_.DropUnsyncedData().ok());
  store.reset();
  auto reopened = OpenStore();
  EXPECT_EQ(reopened->Stats().entries, 300u);
  ExpectReadable(*reopened, 0, 300);
}

TEST_F(RecoveryTest, TornLastRecordIsTruncated) {
  {
    auto store = OpenStore();
    Fill(*store, 0, 50);
  }
  WriteUnsynced(1, 50, 53);
  // Record 50 reached the disk whole, record 51 only partly.
  ASSERT_TRUE(fault_.TearLastWrite(SegmentPath(1), kRecordSize + 30).ok());

  RecoveryReport report;
  auto store = OpenStore(&report);
  EXPECT_EQ(report.torn_bytes_dropped, 30u);
  EXPECT_EQ(report.corrupt_records, 0u);
  ExpectReadable(*store, 0, 51);
  EXPECT_EQ(store->Read(Address(51)).status().code(), Code::kUnwritten);
  EXPECT_EQ(*mem_.Open(SegmentPath(1), OpenOptions{}).value()->Size(), 51 * kRecordSize);
  // Appends continue right after the cut and survive another reopen.
  EXPECT_TRUE(store->AppendSync(MakeRecord(51, PayloadFor(51, kPayload))).ok());
  store.reset();
  auto again = OpenStore(&report);
  EXPECT_EQ(report.torn_bytes_dropped, 0u);
  ExpectReadable(*again, 0, 52);
}

TEST_F(RecoveryTest, BitFlipInPayloadIsCorruptionAndOthersSurvive) {
  auto store = OpenStore();
  Fill(*store, 0, 20);
  ASSERT_TRUE(fault_.FlipBit(SegmentPath(1), 7 * kRecordSize + format::kHeaderSize + 5, 3).ok());

  Status live = store->Read(Address(7)).status();
  EXPECT_EQ(live.code(), Code::kCorruption);
  EXPECT_NE(live.message().find("address 7"), std::string::npos) << live.message();
  EXPECT_NE(live.message().find("offset " + std::to_string(7 * kRecordSize)), std::string::npos);
  store.reset();

  RecoveryReport report;
  store = OpenStore(&report);
  EXPECT_EQ(report.corrupt_records, 1u);
  EXPECT_EQ(report.torn_bytes_dropped, 0u);
  EXPECT_EQ(store->Read(Address(7)).status().code(), Code::kCorruption);
  ExpectReadable(*store, 0, 7);
  ExpectReadable(*store, 8, 20);
  // Still written: write-once holds for a damaged record.
  EXPECT_EQ(store->AppendSync(MakeRecord(7, "again")).code(), Code::kAlreadyWritten);
}

TEST_F(RecoveryTest, BitFlipInHeaderIsCorruptionAndOthersSurvive) {
  auto store = OpenStore();
  Fill(*store, 0, 20);
  // The epoch field of record 7.
  ASSERT_TRUE(fault_.FlipBit(SegmentPath(1), 7 * kRecordSize + 24, 0).ok());
  EXPECT_EQ(store->Read(Address(7)).status().code(), Code::kCorruption);
  store.reset();

  RecoveryReport report;
  store = OpenStore(&report);
  EXPECT_EQ(report.corrupt_records, 1u);
  EXPECT_EQ(report.torn_bytes_dropped, 0u);
  EXPECT_EQ(store->Read(Address(7)).status().code(), Code::kCorruption);
  ExpectReadable(*store, 0, 7);
  ExpectReadable(*store, 8, 20);
}

TEST_F(RecoveryTest, DamagedAddressFieldIsNeverServed) {
  {
    auto store = OpenStore();
    Fill(*store, 0, 20);
  }
  // The address itself is damaged, so recovery cannot name it: the record
  // is skipped (resync to the next valid header) and never served.
  ASSERT_TRUE(fault_.FlipBit(SegmentPath(1), 7 * kRecordSize + 16, 1).ok());
  RecoveryReport report;
  auto store = OpenStore(&report);
  EXPECT_EQ(report.corrupt_records, 1u);
  EXPECT_FALSE(store->Read(Address(7)).ok());
  // Address 5 (7 with bit 1 flipped) still serves its own record.
  ExpectReadable(*store, 0, 7);
  ExpectReadable(*store, 8, 20);
}

TEST_F(RecoveryTest, BitFlipInClosedSegmentIsCaughtOnRead) {
  auto o = Options();
  o.segment_bytes = 10 * kRecordSize;
  {
    auto store = OpenStore(o);
    for (uint64_t i = 0; i < 100; i += 10) Fill(*store, i, i + 10);
  }
  ASSERT_TRUE(fault_.FlipBit(SegmentPath(1), 3 * kRecordSize + format::kHeaderSize + 1, 0).ok());
  RecoveryReport report;
  auto store = OpenStore(o, &report);
  EXPECT_LT(report.scanned_records, 20u);  // segment 1 came from its stored index
  EXPECT_EQ(store->Read(Address(3)).status().code(), Code::kCorruption);
  ExpectReadable(*store, 0, 3);
  ExpectReadable(*store, 4, 100);
}

TEST_F(RecoveryTest, TruncatedSegmentFiles) {
  auto o = Options();
  o.segment_bytes = 10 * kRecordSize;
  {
    auto store = OpenStore(o);
    for (uint64_t i = 0; i < 45; i += 5) Fill(*store, i, i + 5);
  }
  // Segment 1 (closed, indexed) loses its last 1.5 records; the open one
  // (segment 5, addresses 40..44) is cut inside record 43.
  ASSERT_TRUE(
      mem_.Open(SegmentPath(1), OpenOptions{}).value()->Truncate(8 * kRecordSize + 44).ok());
  ASSERT_TRUE(
      mem_.Open(SegmentPath(5), OpenOptions{}).value()->Truncate(3 * kRecordSize + 10).ok());

  RecoveryReport report;
  auto store = OpenStore(o, &report);
  EXPECT_EQ(report.torn_bytes_dropped, 44u + 10u);
  EXPECT_EQ(report.corrupt_records, 0u);
  ExpectReadable(*store, 0, 8);
  EXPECT_EQ(store->Read(Address(8)).status().code(), Code::kUnwritten);
  EXPECT_EQ(store->Read(Address(9)).status().code(), Code::kUnwritten);
  ExpectReadable(*store, 10, 43);
  EXPECT_EQ(store->Read(Address(43)).status().code(), Code::kUnwritten);
  EXPECT_TRUE(store->AppendSync(MakeRecord(43, PayloadFor(43, kPayload))).ok());
}

// Without zero-ahead: the injected fault must hit the group commit, not a
// zero-ahead write to the same file.
SegmentStoreOptions NoZeroAhead(SegmentStoreOptions o) {
  o.zero_ahead_bytes = 0;
  return o;
}

TEST_F(RecoveryTest, FailedWriteIsNotAcknowledgedAndReopenRecovers) {
  {
    auto store = OpenStore(NoZeroAhead(Options()));
    Fill(*store, 0, 10);
    fault_.FailNext(FaultOp::kWrite, 1, "seg-");
    Status s = store->AppendSync(MakeRecord(10, PayloadFor(10, kPayload)));
    EXPECT_EQ(s.code(), Code::kIoError) << s.ToString();
    EXPECT_EQ(store->Read(Address(10)).status().code(), Code::kUnwritten);
    Status after = store->AppendSync(MakeRecord(11, PayloadFor(11, kPayload)));
    EXPECT_EQ(after.code(), Code::kIoError);
    EXPECT_NE(after.message().find("reopen"), std::string::npos) << after.message();
    ExpectReadable(*store, 0, 10);
  }
  ASSERT_TRUE(fault_.DropUnsyncedData().ok());
  RecoveryReport report;
  auto store = OpenStore(&report);
  EXPECT_EQ(report.records, 10u);
  ExpectReadable(*store, 0, 10);
  EXPECT_EQ(store->Read(Address(10)).status().code(), Code::kUnwritten);
  EXPECT_TRUE(store->AppendSync(MakeRecord(10, PayloadFor(10, kPayload))).ok());
}

TEST_F(RecoveryTest, FailedSyncIsNotAcknowledgedAndReopenRecovers) {
  {
    // The store syncs through File::Write(..., sync=true); skip if this
    // FaultInjectionFileSystem does not model a failing sync there.
    auto probe = fault_.Open("/probe", OpenOptions{.create = true});
    ASSERT_TRUE(probe.ok());
    fault_.FailNext(FaultOp::kSync, 1, "/probe");
    ConstBuffer b("x", 1);
    bool models_sync = !(*probe)->Write(0, std::span<const ConstBuffer>(&b, 1), true).ok();
    fault_.ClearFailures();
    if (!models_sync) GTEST_SKIP() << "FaultInjectionFileSystem ignores kSync in Write(sync=true)";
  }
  {
    auto store = OpenStore(NoZeroAhead(Options()));
    Fill(*store, 0, 10);
    fault_.FailNext(FaultOp::kSync, 1, "seg-");
    Status s = store->AppendSync(MakeRecord(10, PayloadFor(10, kPayload)));
    EXPECT_EQ(s.code(), Code::kIoError) << s.ToString();
    EXPECT_EQ(store->Read(Address(10)).status().code(), Code::kUnwritten);
  }
  // Whether or not the unsynced bytes survive, the record was never
  // acknowledged; the store cut them off when the sync failed.
  RecoveryReport report;
  auto store = OpenStore(&report);
  EXPECT_EQ(report.records, 10u);
  ExpectReadable(*store, 0, 10);
  EXPECT_EQ(store->Read(Address(10)).status().code(), Code::kUnwritten);
}

TEST_F(RecoveryTest, StaleSegmentIndexFallsBackToScan) {
  auto o = Options();
  o.segment_bytes = 10 * kRecordSize;
  {
    auto store = OpenStore(o);
    for (uint64_t i = 0; i < 30; i += 10) Fill(*store, i, i + 10);
  }
  // Append a valid record to closed segment 1 behind the store's back: the
  // stored index no longer matches the file size, so the segment is scanned.
  WriteUnsynced(1, 100, 101);
  RecoveryReport report;
  auto store = OpenStore(o, &report);
  EXPECT_GE(report.scanned_records, 11u);
  ExpectReadable(*store, 0, 30);
  ExpectReadable(*store, 100, 101);
}

// The index stored in parts (docs/log-format.md, "Metadata").
class IndexPartsTest : public RecoveryTest {
 protected:
  static constexpr uint64_t kPerSegment = 100;
  const StreamId kThirds = StreamId::FromName("thirds");

  SegmentStoreOptions PartsOptions() {
    auto o = Options();
    // Groups of 10 records (~940 bytes with their streams): 100 records a
    // segment, the last group crossing segment_bytes.
    o.segment_bytes = kPerSegment * kRecordSize + 16;
    o.index_part_entries = 16;
    return o;
  }

  // Appends [from, to) in groups of 10, every third address also on stream
  // kThirds (so those records are longer).
  void FillWithStream(SegmentStore& store, uint64_t from, uint64_t to) {
    testing::AppendInTens(store, from, to, kPayload, [&](uint64_t a) {
      return a % 3 == 0 ? std::vector<StreamId>{kThirds} : std::vector<StreamId>{};
    });
  }

  void ExpectStream(SegmentStore& store, uint64_t to) {
    std::vector<Address> want;
    for (uint64_t a = 0; a < to; a += 3) want.push_back(Address(a));
    EXPECT_EQ(store.StreamAddresses(kThirds, Address(0), Address(to)), want);
  }

  // Reopens the store and checks that it holds [0, n) and its stream,
  // having read `scanned` records from segment files.
  std::unique_ptr<SegmentStore> ReopenAndCheck(uint64_t n, uint64_t scanned) {
    RecoveryReport report;
    auto store = OpenStore(PartsOptions(), &report);
    EXPECT_EQ(report.scanned_records, scanned);
    EXPECT_EQ(report.records, n);
    ExpectReadable(*store, 0, n);
    ExpectStream(*store, n);
    return store;
  }

  // The metadata's keys with `prefix` (the store must be closed).
  std::vector<std::string> Keys(const std::string& prefix) {
    rocksdb::Options ro;
    ro.env = rocks_env_.get();
    rocksdb::DB* raw = nullptr;
    EXPECT_TRUE(rocksdb::DB::Open(ro, std::string(kDir) + "/metadata", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::vector<std::string> keys;
    if (db == nullptr) return keys;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
      keys.push_back(it->key().ToString());
    }
    return keys;
  }

  void DeleteKey(const std::string& key) {
    rocksdb::Options ro;
    ro.env = rocks_env_.get();
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(ro, std::string(kDir) + "/metadata", &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), key).ok());
  }
};

TEST_F(IndexPartsTest, PartsAreStoredWhileTheSegmentFills) {
  {
    auto store = OpenStore(PartsOptions());
    FillWithStream(*store, 0, 60);
  }
  // Groups of 10, a part every 16 entries or more: parts after 20, 40, 60
  // records; no closing record, as segment 1 is still open.
  EXPECT_EQ(Keys("segpart/"),
            (std::vector<std::string>{"segpart/00000000000000000001/0000000000",
                                      "segpart/00000000000000000001/0000000001",
                                      "segpart/00000000000000000001/0000000002"}));
  EXPECT_TRUE(Keys("seg/").empty());
  // They are not trusted without one: the open segment is scanned.
  ReopenAndCheck(60, 60);
}

TEST_F(IndexPartsTest, ClosedSegmentsLoadFromTheirParts) {
  {
    auto store = OpenStore(PartsOptions());
    FillWithStream(*store, 0, 350);
  }
  EXPECT_EQ(Keys("seg/").size(), 3u);  // segments 1-3 are closed
  // Only the open segment (300..349) is read from its file.
  ReopenAndCheck(350, 50);
}

TEST_F(IndexPartsTest, AMissingPartMeansItsSegmentIsScanned) {
  {
    auto store = OpenStore(PartsOptions());
    FillWithStream(*store, 0, 350);
  }
  DeleteKey("segpart/00000000000000000001/0000000001");
  ReopenAndCheck(350, kPerSegment + 50);  // segment 1 and the open one
  // The scan stored segment 1's index again.
  ReopenAndCheck(350, 50);
}

TEST_F(IndexPartsTest, PartsFromBeforeACrashAreRebuiltFromTheScan) {
  {
    auto store = OpenStore(PartsOptions());
    FillWithStream(*store, 0, 50);
    store->Flush();
    ASSERT_TRUE(fault_.DropUnsyncedData().ok());
  }
  // Segment 1 is scanned; its index is rebuilt from the scan (parts of the
  // first 50 records) and goes on filling.
  {
    RecoveryReport report;
    auto store = OpenStore(PartsOptions(), &report);
    EXPECT_EQ(report.scanned_records, 50u);
    FillWithStream(*store, 50, 350);
  }
  ReopenAndCheck(350, 50);
}

TEST_F(IndexPartsTest, TrimDeletesTheParts) {
  {
    auto store = OpenStore(PartsOptions());
    FillWithStream(*store, 0, 350);
    ASSERT_TRUE(store->Trim(Address(250)).ok());
  }
  // Segments wholly below 250 are gone with their indexes.
  for (const std::string& key : Keys("segpart/")) {
    EXPECT_FALSE(key.starts_with("segpart/00000000000000000001/")) << key;
    EXPECT_FALSE(key.starts_with("segpart/00000000000000000002/")) << key;
  }
  EXPECT_FALSE(Keys("segpart/00000000000000000003/").empty());
}

}  // namespace
}  // namespace tally::log
