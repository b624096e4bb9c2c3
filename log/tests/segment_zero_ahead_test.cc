// Zero-ahead (segment_writer.cc): zeros written and synced past the open
// segment's end never cover a record, are read back as the segment's clean
// end after a crash, and are cut off a segment before its index is stored.

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "record_format.h"
#include "segment_store_test_util.h"

namespace tally::log {
namespace {

using testing::AppendAndWait;
using testing::MakeRecord;
using testing::PayloadFor;

constexpr size_t kPayload = 40;
constexpr uint64_t kRecordSize = format::kHeaderSize + kPayload;  // no streams
constexpr uint64_t kMiB = 1ull << 20;

class ZeroAheadTest : public testing::StoreFixture {
 protected:
  SegmentStoreOptions ZeroOptions(uint64_t segment_bytes, uint64_t ahead) {
    SegmentStoreOptions o = Options();
    o.segment_bytes = segment_bytes;
    o.zero_ahead_bytes = ahead;
    return o;
  }

  void Fill(SegmentStore& store, uint64_t from, uint64_t to, size_t payload = kPayload) {
    std::vector<Record> batch;
    for (uint64_t i = from; i < to; ++i) batch.push_back(MakeRecord(i, PayloadFor(i, payload)));
    for (const Status& s : AppendAndWait(store, std::move(batch)))
      ASSERT_TRUE(s.ok()) << s.ToString();
  }

  void ExpectReadable(SegmentStore& store, uint64_t from, uint64_t to, size_t payload = kPayload) {
    for (uint64_t i = from; i < to; ++i) {
      auto r = store.Read(Address(i));
      ASSERT_TRUE(r.ok()) << "address " << i << ": " << r.status().ToString();
      ASSERT_EQ(r->payload, PayloadFor(i, payload)) << "address " << i;
    }
  }

  // 0 for a file that does not exist.
  uint64_t FileSize(uint32_t id) {
    if (!mem_.Exists(SegmentPath(id))) return 0;
    return *mem_.Open(SegmentPath(id), OpenOptions{}).value()->Size();
  }

  std::string FileBytes(uint32_t id) {
    auto f = mem_.Open(SegmentPath(id), OpenOptions{}).value();
    std::string bytes(*f->Size(), '\0');
    EXPECT_EQ(*f->Read(0, std::span<char>(bytes)), bytes.size());
    return bytes;
  }

  // Replaces segment `id` with `bytes`: the image a power cut leaves when
  // everything in it had been synced.
  void WriteImage(uint32_t id, const std::string& bytes) {
    auto f = mem_.Open(SegmentPath(id), OpenOptions{}).value();
    ASSERT_TRUE(f->Truncate(0).ok());
    ConstBuffer b(bytes.data(), bytes.size());
    ASSERT_TRUE(f->Write(0, std::span<const ConstBuffer>(&b, 1), true).ok());
  }

  // Segment 1 as a power cut would leave it once zero-ahead ran: records
  // 0..99, then at least 3 MiB of zeros (the store is closed afterwards,
  // which cuts the file back to its records).
  std::string ZeroTailImage() {
    auto store = OpenStore(ZeroOptions(16 * kMiB, 3 * kMiB));
    Fill(*store, 0, 100);
    EXPECT_TRUE(WaitForSize(1, 100 * kRecordSize + 3 * kMiB)) << "file size " << FileSize(1);
    return FileBytes(1);
  }

  // Waits (up to 10 s) until segment `id` is at least `size` bytes long.
  bool WaitForSize(uint32_t id, uint64_t size) {
    for (int i = 0; i < 1000; ++i) {
      if (FileSize(id) >= size) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
};

bool AllZero(std::string_view bytes) {
  return bytes.find_first_not_of('\0') == std::string_view::npos;
}

TEST_F(ZeroAheadTest, ZerosLieAheadOfTheRecordsAndNeverCoverThem) {
  auto store = OpenStore(ZeroOptions(16 * kMiB, 3 * kMiB));
  Fill(*store, 0, 100);
  const uint64_t end = 100 * kRecordSize;
  // A 1 MiB gap, then 128 KiB chunks until 3 MiB lie past the end.
  ASSERT_TRUE(WaitForSize(1, end + 3 * kMiB)) << "file size " << FileSize(1);
  const std::string bytes = FileBytes(1);
  EXPECT_TRUE(AllZero(std::string_view(bytes).substr(end)));
  // Groups keep landing where the zeros were.
  for (uint64_t a = 100; a < 2000; a += 100) Fill(*store, a, a + 100);
  ExpectReadable(*store, 0, 2000);
  EXPECT_EQ(store->Stats().bytes, 2000 * kRecordSize);
}

TEST_F(ZeroAheadTest, CrashImageWithAZeroTailRecoversAsACleanEnd) {
  const std::string image = ZeroTailImage();
  ASSERT_GE(image.size(), 100 * kRecordSize + 3 * kMiB);
  // The clean close cut the tail off; a power cut would have left it.
  EXPECT_EQ(FileSize(1), 100 * kRecordSize);
  WriteImage(1, image);

  RecoveryReport report;
  {
    auto store = OpenStore(ZeroOptions(16 * kMiB, 3 * kMiB), &report);
    EXPECT_EQ(report.records, 100u);
    EXPECT_EQ(report.torn_bytes_dropped, 0u);
    EXPECT_EQ(report.corrupt_records, 0u);
    EXPECT_EQ(report.zero_tail_bytes, image.size() - 100 * kRecordSize);
    // The open segment keeps its zeros; new records overwrite them.
    EXPECT_EQ(FileSize(1), image.size());
    Fill(*store, 100, 300);
    ExpectReadable(*store, 0, 300);
  }
  auto store = OpenStore(ZeroOptions(16 * kMiB, 3 * kMiB), &report);
  EXPECT_EQ(report.records, 300u);
  ExpectReadable(*store, 0, 300);
}

TEST_F(ZeroAheadTest, TornRecordBeforeTheZerosIsStillATornTail) {
  std::string image = ZeroTailImage();
  ASSERT_GE(image.size(), 100 * kRecordSize + 3 * kMiB);
  // Half of a record that was never synced, right after the last good one.
  Record r = MakeRecord(100, PayloadFor(100, kPayload));
  std::string torn(format::EncodedSize(r), '\0');
  format::EncodeRecord(r, torn.data());
  image.replace(100 * kRecordSize, torn.size() / 2, torn.substr(0, torn.size() / 2));
  WriteImage(1, image);

  RecoveryReport report;
  auto store = OpenStore(ZeroOptions(16 * kMiB, 3 * kMiB), &report);
  EXPECT_EQ(report.records, 100u);
  EXPECT_EQ(report.torn_bytes_dropped, image.size() - 100 * kRecordSize);
  EXPECT_EQ(report.zero_tail_bytes, 0u);
  EXPECT_EQ(store->Read(Address(100)).status().code(), Code::kUnwritten);
  ExpectReadable(*store, 0, 100);
  Fill(*store, 100, 110);
  ExpectReadable(*store, 0, 110);
}

TEST_F(ZeroAheadTest, SegmentsRollWhileZerosAreWrittenAhead) {
  // 2 MiB segments with 8 KiB payloads: zeros start 1 MiB past the end, so
  // every segment is zeroed ahead for a while before it rolls. Zeros never
  // go past segment_bytes and a segment rolls only once its records reach
  // it, so no rolled segment keeps a zero tail.
  constexpr size_t kBig = 8192;
  constexpr uint64_t kBigRecord = format::kHeaderSize + kBig;
  constexpr uint64_t kN = 1200;  // ~9.4 MiB: 5 segments
  auto o = ZeroOptions(2 * kMiB, 4 * kMiB);
  {
    auto store = OpenStore(o);
    for (uint64_t a = 0; a < kN; a += 20) {  // one group each
      Fill(*store, a, a + 20, kBig);
      // Give the indexer time to zero ahead before the next group lands.
      if (a % 200 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ExpectReadable(*store, 0, kN, kBig);
  }
  // A segment rolls before the first group that finds it at 2 MiB or more.
  constexpr uint64_t kGroup = 20 * kBigRecord;
  const uint64_t per_segment = (2 * kMiB + kGroup - 1) / kGroup * 20;
  uint64_t records = 0;
  for (uint32_t id = 1; records < kN; ++id) {
    const uint64_t n = std::min(per_segment, kN - records);
    EXPECT_EQ(FileSize(id), n * kBigRecord) << "segment " << id;
    records += n;
  }
  RecoveryReport report;
  auto store = OpenStore(o, &report);
  EXPECT_EQ(report.records, kN);
  // Only the open segment is scanned: every rolled one's index matched.
  EXPECT_EQ(report.scanned_records, kN % per_segment);
  ExpectReadable(*store, 0, kN, kBig);
}

// With a smaller segment_bytes after a restart, the open segment's zeros
// can reach past the size at which it now rolls: the tail is cut before the
// rolled segment's index is stored (else every start would scan it).
TEST_F(ZeroAheadTest, ZeroTailPastANewSegmentSizeIsCutWhenTheSegmentRolls) {
  const std::string image = ZeroTailImage();
  ASSERT_GE(image.size(), 100 * kRecordSize + 3 * kMiB);
  WriteImage(1, image);  // the crash image, zeros and all
  const auto o = ZeroOptions(64 * 1024, 3 * kMiB);
  uint64_t n = 100;
  {
    auto store = OpenStore(o);
    ASSERT_GT(FileSize(1), 64u * 1024);
    while (n * kRecordSize < 64 * 1024) {  // fill segment 1 to its new size
      Fill(*store, n, n + 50);
      n += 50;
    }
    Fill(*store, n, n + 10);  // rolls
    n += 10;
    store->Flush();
  }
  EXPECT_EQ(FileSize(1), (n - 10) * kRecordSize);
  RecoveryReport report;
  auto store = OpenStore(o, &report);
  EXPECT_EQ(report.records, n);
  EXPECT_EQ(report.scanned_records, 10u);  // segment 1 came from its stored index
  ExpectReadable(*store, 0, n);
}

// A restart with a segment size below the open segment's records closes it
// at recovery; its zero tail goes before its index is stored.
TEST_F(ZeroAheadTest, RecoveryCutsTheZeroTailOfASegmentItCloses) {
  const std::string image = ZeroTailImage();
  ASSERT_GE(image.size(), 100 * kRecordSize + 3 * kMiB);
  WriteImage(1, image);
  const auto o = ZeroOptions(1024, 3 * kMiB);
  RecoveryReport report;
  {
    auto store = OpenStore(o, &report);
    EXPECT_EQ(report.scanned_records, 100u);
    EXPECT_EQ(FileSize(1), 100 * kRecordSize);
    Fill(*store, 100, 110);
  }
  auto store = OpenStore(o, &report);
  EXPECT_EQ(report.records, 110u);
  EXPECT_EQ(report.scanned_records, 10u);
  ExpectReadable(*store, 0, 110);
}

// After a wipe, zeros follow the new segment 1's end, not the end the old
// open segment had.
TEST_F(ZeroAheadTest, AfterAWipeZerosFollowTheNewSegment) {
  auto store = OpenStore(ZeroOptions(16 * kMiB, 3 * kMiB));
  Fill(*store, 0, 4000);
  ASSERT_TRUE(WaitForSize(1, 4000 * kRecordSize + 3 * kMiB));
  ASSERT_TRUE(store->Wipe(Epoch(2)).ok());
  Fill(*store, 0, 100);
  ASSERT_TRUE(WaitForSize(1, 100 * kRecordSize + 3 * kMiB));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let any further chunk land
  EXPECT_LT(FileSize(1), 100 * kRecordSize + 3 * kMiB + 128 * 1024);
  ExpectReadable(*store, 0, 100);
}

TEST_F(ZeroAheadTest, ConcurrentWritersAcrossRollsLoseNothing) {
  constexpr size_t kPayloadBig = 1000;
  constexpr int kThreads = 4;
  constexpr uint64_t kPerThread = 1500;
  auto o = ZeroOptions(2 * kMiB, 2 * kMiB);
  {
    auto store = OpenStore(o);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (uint64_t i = 0; i < kPerThread; i += 10) {
          std::vector<Record> batch;
          for (uint64_t k = i; k < i + 10; ++k) {
            const uint64_t a = k * kThreads + t;
            batch.push_back(MakeRecord(a, PayloadFor(a, kPayloadBig)));
          }
          for (const Status& s : AppendAndWait(*store, std::move(batch))) {
            ASSERT_TRUE(s.ok()) << s.ToString();
          }
        }
      });
    }
    for (auto& th : threads) th.join();
    ExpectReadable(*store, 0, kThreads * kPerThread, kPayloadBig);
  }
  RecoveryReport report;
  auto store = OpenStore(o, &report);
  EXPECT_EQ(report.records, kThreads * kPerThread);
  EXPECT_EQ(report.corrupt_records, 0u);
  EXPECT_EQ(report.torn_bytes_dropped, 0u);
  ExpectReadable(*store, 0, kThreads * kPerThread, kPayloadBig);
}

// The segment after the open one is created and its first
// zero_ahead_bytes zeroed before the roll, so the roll creates no file and
// the first groups in the new segment overwrite zeros.
TEST_F(ZeroAheadTest, NextSegmentIsCreatedAndZeroedBeforeItsRoll) {
  const auto o = ZeroOptions(2 * kMiB, 1 * kMiB);
  auto store = OpenStore(o);
  // Segment 1's writer within zero_ahead_bytes of its end.
  const uint64_t per_segment = (2 * kMiB + kRecordSize - 1) / kRecordSize;
  const uint64_t near_end = per_segment - (512 * 1024) / kRecordSize;
  for (uint64_t a = 0; a < near_end; a += 1000) Fill(*store, a, std::min(a + 1000, near_end));
  ASSERT_TRUE(WaitForSize(2, 1 * kMiB)) << "segment 2 was not prepared";
  EXPECT_EQ(FileSize(2), 1 * kMiB);
  EXPECT_TRUE(AllZero(FileBytes(2)));
  EXPECT_EQ(store->Stats().segments, 1u);  // not a segment of the store until the roll

  // Past the roll (a segment rolls before the first group that finds it
  // full): the records land at the start of the zeroed file.
  Fill(*store, near_end, per_segment);
  Fill(*store, per_segment, per_segment + 100);
  ExpectReadable(*store, 0, per_segment + 100);
  EXPECT_EQ(store->Stats().segments, 2u);
  EXPECT_GE(FileSize(2), 1 * kMiB);
  const std::string bytes = FileBytes(2);
  const uint64_t in_two = store->Stats().bytes - FileSize(1);
  ASSERT_LT(in_two, 1 * kMiB);
  EXPECT_FALSE(AllZero(std::string_view(bytes).substr(0, in_two)));
  EXPECT_TRUE(AllZero(std::string_view(bytes).substr(in_two)));
}

// A clean close removes a prepared segment (it holds no record); reopening
// keeps writing the open one.
TEST_F(ZeroAheadTest, CleanCloseRemovesThePreparedSegment) {
  const auto o = ZeroOptions(2 * kMiB, 4 * kMiB);  // prepared as soon as segment 1 opens
  {
    auto store = OpenStore(o);
    Fill(*store, 0, 100);
    ASSERT_TRUE(WaitForSize(2, 2 * kMiB)) << "segment 2 was not prepared";
  }
  EXPECT_FALSE(mem_.Exists(SegmentPath(2)));
  RecoveryReport report;
  auto store = OpenStore(o, &report);
  EXPECT_EQ(report.records, 100u);
  EXPECT_EQ(report.segments, 1u);
  Fill(*store, 100, 200);
  ExpectReadable(*store, 0, 200);
}

// A power cut with the next segment prepared: it holds only zeros, so
// recovery opens it as the (empty) open segment and closes the one before
// it where its records end. Nothing acknowledged is lost.
TEST_F(ZeroAheadTest, PowerCutWithAPreparedSegmentLosesNothing) {
  const auto o = ZeroOptions(2 * kMiB, 4 * kMiB);
  std::string one, two;
  {
    auto store = OpenStore(o);
    Fill(*store, 0, 100);
    ASSERT_TRUE(WaitForSize(2, 2 * kMiB)) << "segment 2 was not prepared";
    ASSERT_TRUE(WaitForSize(1, 2 * kMiB));
    one = FileBytes(1);
    two = FileBytes(2);
  }
  // The images a power cut would have left (the clean close changed both).
  WriteImage(1, one);
  {
    OpenOptions create;
    create.create = true;
    auto f = mem_.Open(SegmentPath(2), create).value();
    ConstBuffer b(two.data(), two.size());
    ASSERT_TRUE(f->Write(0, std::span<const ConstBuffer>(&b, 1), true).ok());
  }
  RecoveryReport report;
  {
    auto store = OpenStore(o, &report);
    EXPECT_EQ(report.records, 100u);
    EXPECT_EQ(report.torn_bytes_dropped, 0u);
    EXPECT_EQ(report.corrupt_records, 0u);
    EXPECT_EQ(report.segments, 2u);
    EXPECT_EQ(FileSize(1), 100 * kRecordSize);  // closed at its records' end
    Fill(*store, 100, 200);                     // into segment 2
    ExpectReadable(*store, 0, 200);
  }
  auto store = OpenStore(o, &report);
  EXPECT_EQ(report.records, 200u);
  EXPECT_EQ(report.scanned_records, 100u);  // segment 1 came from the index stored at recovery
  ExpectReadable(*store, 0, 200);
}

}  // namespace
}  // namespace tally::log
