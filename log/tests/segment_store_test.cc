// SegmentStore behaviour: round trips, write-once, limits, streams, rolling,
// trim, seal, and the real PosixFileSystem (io_uring) path.

#include "tally/log/segment_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "segment_store_test_util.h"
#include "tally/base/posix_env.h"

namespace tally::log {
namespace {

using testing::AppendAndWait;
using testing::MakeRecord;
using testing::PayloadFor;

class SegmentStoreTest : public testing::StoreFixture {};

TEST_F(SegmentStoreTest, RoundTripDataAndHole) {
  auto store = OpenStore();
  ASSERT_NE(store, nullptr);
  StreamId s = StreamId::FromName("switches");
  ASSERT_TRUE(store->AppendSync(MakeRecord(7, "hello", {s}, 3)).ok());
  Record hole;
  hole.address = Address(8);
  hole.epoch = Epoch(4);
  hole.type = RecordType::kHole;
  ASSERT_TRUE(store->AppendSync(hole).ok());

  auto r = store->Read(Address(7));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->address, Address(7));
  EXPECT_EQ(r->epoch, Epoch(3));
  EXPECT_EQ(r->type, RecordType::kData);
  EXPECT_EQ(r->payload, "hello");
  ASSERT_EQ(r->streams.size(), 1u);
  EXPECT_EQ(r->streams[0], s);

  auto h = store->Read(Address(8));
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->type, RecordType::kHole);
  EXPECT_EQ(h->epoch, Epoch(4));
  EXPECT_TRUE(h->payload.empty());

  EXPECT_EQ(store->Read(Address(9)).status().code(), Code::kUnwritten);
  StoreStats st = store->Stats();
  EXPECT_EQ(st.entries, 2u);
  EXPECT_EQ(st.local_tail, 9u);
}

TEST_F(SegmentStoreTest, EmptyPayloadAndManyStreams) {
  auto store = OpenStore();
  std::vector<StreamId> streams;
  for (int i = 0; i < 300; ++i) streams.push_back(StreamId::FromName("t" + std::to_string(i)));
  ASSERT_TRUE(store->AppendSync(MakeRecord(1, "", streams)).ok());
  auto r = store->Read(Address(1));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->streams, streams);
  EXPECT_TRUE(r->payload.empty());
}

TEST_F(SegmentStoreTest, MixedSmallAndLargePayloadsRoundTrip) {
  auto store = OpenStore();
  std::vector<Record> batch;
  for (uint64_t i = 0; i < 40; ++i) {
    size_t size = (i % 3 == 0) ? 4096 + i : (i % 3 == 1 ? 10 : 2048);
    batch.push_back(MakeRecord(i, PayloadFor(i, size), {StreamId::FromName("m")}));
  }
  for (const Status& s : AppendAndWait(*store, std::move(batch))) ASSERT_TRUE(s.ok());
  store.reset();
  RecoveryReport report;
  store = OpenStore(&report);
  EXPECT_EQ(report.corrupt_records, 0u);
  EXPECT_EQ(report.records, 40u);
  for (uint64_t i = 0; i < 40; ++i) {
    size_t size = (i % 3 == 0) ? 4096 + i : (i % 3 == 1 ? 10 : 2048);
    auto r = store->Read(Address(i));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->payload, PayloadFor(i, size));
  }
}

TEST_F(SegmentStoreTest, SecondWriteIsAlreadyWritten) {
  auto store = OpenStore();
  ASSERT_TRUE(store->AppendSync(MakeRecord(4812, "first", {}, 3)).ok());
  Status s = store->AppendSync(MakeRecord(4812, "second", {}, 5));
  EXPECT_EQ(s.code(), Code::kAlreadyWritten);
  EXPECT_NE(s.message().find("address 4812 already written (epoch 3)"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("retry with a new token"), std::string::npos);
  EXPECT_EQ(store->Read(Address(4812))->payload, "first");
}

TEST_F(SegmentStoreTest, DuplicateWithinOneBatch) {
  auto store = OpenStore();
  auto st = AppendAndWait(*store, {MakeRecord(1, "a"), MakeRecord(2, "b"), MakeRecord(1, "c")});
  ASSERT_EQ(st.size(), 3u);
  EXPECT_TRUE(st[0].ok());
  EXPECT_TRUE(st[1].ok());
  EXPECT_EQ(st[2].code(), Code::kAlreadyWritten);
  EXPECT_NE(st[2].message().find("write in progress"), std::string::npos) << st[2].message();
  EXPECT_EQ(store->Read(Address(1))->payload, "a");
}

TEST_F(SegmentStoreTest, RacingWritersHaveExactlyOneWinnerPerAddress) {
  auto store = OpenStore();
  constexpr int kThreads = 8;
  constexpr uint64_t kAddresses = 1000;
  std::vector<std::vector<Status>> results(kThreads);
  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Record> batch;
      for (uint64_t a = 0; a < kAddresses; ++a) {
        // Each thread walks the addresses in a different order.
        uint64_t addr = (a * (2 * t + 1) + t * 97) % kAddresses;
        batch.push_back(MakeRecord(addr, "thread-" + std::to_string(t)));
      }
      ready++;
      while (ready.load() < kThreads) std::this_thread::yield();
      // Several smaller appends so that threads interleave.
      std::vector<Status> mine;
      for (size_t i = 0; i < batch.size(); i += 100) {
        std::vector<Record> part(std::make_move_iterator(batch.begin() + i),
                                 std::make_move_iterator(batch.begin() + i + 100));
        for (Status& s : AppendAndWait(*store, std::move(part))) mine.push_back(std::move(s));
      }
      results[t] = std::move(mine);
    });
  }
  for (auto& th : threads) th.join();

  std::vector<int> winner(kAddresses, -1);
  for (int t = 0; t < kThreads; ++t) {
    for (uint64_t a = 0; a < kAddresses; ++a) {
      uint64_t addr = (a * (2 * t + 1) + t * 97) % kAddresses;
      const Status& s = results[t][a];
      if (s.ok()) {
        EXPECT_EQ(winner[addr], -1) << "two winners for address " << addr;
        winner[addr] = t;
      } else {
        EXPECT_EQ(s.code(), Code::kAlreadyWritten) << s.ToString();
      }
    }
  }
  for (uint64_t a = 0; a < kAddresses; ++a) {
    ASSERT_NE(winner[a], -1) << "no winner for address " << a;
    auto r = store->Read(Address(a));
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->payload, "thread-" + std::to_string(winner[a]));
  }
}

// Four writers append interleaved batches of 200 addresses, so most index
// pages (256 addresses) are filled by two writers, out of order: every entry
// stays findable, write-once and readable throughout.
TEST_F(SegmentStoreTest, IndexPagesSharedByConcurrentWritersKeepEveryEntry) {
  auto store = OpenStore();
  constexpr int kThreads = 4;
  constexpr uint64_t kAddresses = 40'000;
  constexpr uint64_t kBatch = 200;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t first = t * kBatch; first < kAddresses; first += kThreads * kBatch) {
        std::vector<Record> batch;
        for (uint64_t a = first; a < first + kBatch; ++a)
          batch.push_back(MakeRecord(a, PayloadFor(a)));
        for (const Status& st : AppendAndWait(*store, std::move(batch))) failures += !st.ok();
        // An address appended before stays taken while its page fills.
        auto again = AppendAndWait(*store, {MakeRecord(first, "second")});
        failures += again[0].code() != Code::kAlreadyWritten;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (uint64_t a = 0; a < kAddresses; ++a) {
    auto r = store->Read(Address(a));
    ASSERT_TRUE(r.ok()) << a << ": " << r.status().ToString();
    ASSERT_EQ(r->payload, PayloadFor(a));
  }
}

TEST_F(SegmentStoreTest, TooLargeNamesTheSizes) {
  auto o = Options();
  o.max_record_bytes = 100;
  auto store = OpenStore(o);
  auto st = AppendAndWait(*store, {MakeRecord(1, std::string(101, 'x')), MakeRecord(2, "ok")});
  EXPECT_EQ(st[0].code(), Code::kTooLarge);
  EXPECT_NE(st[0].message().find("101"), std::string::npos) << st[0].message();
  EXPECT_NE(st[0].message().find("100"), std::string::npos);
  EXPECT_TRUE(st[1].ok());
  EXPECT_EQ(store->Read(Address(1)).status().code(), Code::kUnwritten);
}

TEST_F(SegmentStoreTest, OverloadedWhenPendingBytesWouldExceedTheLimit) {
  auto o = Options();
  o.max_pending_bytes = 100;
  auto store = OpenStore(o);
  auto st = AppendAndWait(*store, {MakeRecord(1, std::string(200, 'x'))});
  EXPECT_EQ(st[0].code(), Code::kOverloaded);
  EXPECT_TRUE(st[0].retryable());
  EXPECT_TRUE(store->AppendSync(MakeRecord(1, "small")).ok());
}

TEST_F(SegmentStoreTest, StreamAndListAddresses) {
  auto store = OpenStore();
  StreamId a = StreamId::FromName("a"), b = StreamId::FromName("b");
  std::vector<Record> batch;
  for (uint64_t i = 0; i < 100; ++i) {
    std::vector<StreamId> streams;
    if (i % 2 == 0) streams.push_back(a);
    if (i % 3 == 0) streams.push_back(b);
    batch.push_back(MakeRecord(i * 10, PayloadFor(i), streams));
  }
  for (const Status& s : AppendAndWait(*store, std::move(batch))) ASSERT_TRUE(s.ok());

  auto in_a = store->StreamAddresses(a, Address(0), Address(1000));
  ASSERT_EQ(in_a.size(), 50u);
  EXPECT_EQ(in_a[1], Address(20));
  auto in_b = store->StreamAddresses(b, Address(30), Address(91));
  std::vector<Address> want_b = {Address(30), Address(60), Address(90)};
  EXPECT_EQ(in_b, want_b);
  EXPECT_TRUE(store->StreamAddresses(StreamId::FromName("none"), Address(0), Address(99)).empty());

  auto listed = store->ListAddresses(Address(15), Address(1000), 3);
  std::vector<Address> want = {Address(20), Address(30), Address(40)};
  EXPECT_EQ(listed, want);
  EXPECT_EQ(store->ListAddresses(Address(0), kMaxAddress, 1000).size(), 100u);
}

TEST_F(SegmentStoreTest, RollsSegmentsAndReopenScansOnlyTheOpenOne) {
  auto o = Options();
  o.segment_bytes = 4096;
  StreamId s = StreamId::FromName("s");
  constexpr uint64_t kRecords = 600;
  {
    auto store = OpenStore(o);
    for (uint64_t i = 0; i < kRecords; i += 20) {
      std::vector<Record> batch;
      for (uint64_t j = i; j < i + 20; ++j) batch.push_back(MakeRecord(j, PayloadFor(j, 100), {s}));
      for (const Status& st : AppendAndWait(*store, std::move(batch))) ASSERT_TRUE(st.ok());
    }
    EXPECT_GT(store->Stats().segments, 10u);
  }
  RecoveryReport report;
  auto store = OpenStore(o, &report);
  EXPECT_EQ(report.records, kRecords);
  EXPECT_GT(report.segments, 10u);
  EXPECT_GT(report.scanned_records, 0u);
  EXPECT_LT(report.scanned_records, 60u);  // only the open segment
  EXPECT_EQ(report.corrupt_records, 0u);
  EXPECT_EQ(report.torn_bytes_dropped, 0u);
  for (uint64_t i = 0; i < kRecords; ++i) {
    auto r = store->Read(Address(i));
    ASSERT_TRUE(r.ok()) << i << ": " << r.status().ToString();
    EXPECT_EQ(r->payload, PayloadFor(i, 100));
  }
  EXPECT_EQ(store->StreamAddresses(s, Address(0), Address(kRecords)).size(), kRecords);
  // The reopened store keeps writing and write-once still holds.
  EXPECT_EQ(store->AppendSync(MakeRecord(5, "x")).code(), Code::kAlreadyWritten);
  EXPECT_TRUE(store->AppendSync(MakeRecord(kRecords, "next", {s})).ok());
}

TEST_F(SegmentStoreTest, TrimDeletesSegmentsAndSurvivesReopen) {
  auto o = Options();
  o.segment_bytes = 2048;
  StreamId s = StreamId::FromName("s");
  {
    auto store = OpenStore(o);
    for (uint64_t i = 0; i < 200; i += 10) {
      std::vector<Record> batch;
      for (uint64_t j = i; j < i + 10; ++j) batch.push_back(MakeRecord(j, PayloadFor(j, 100), {s}));
      for (const Status& st : AppendAndWait(*store, std::move(batch))) ASSERT_TRUE(st.ok());
    }
    const uint64_t before = store->Stats().segments;
    auto files_before = mem_.ListDir(kDir);
    ASSERT_TRUE(store->Trim(Address(150)).ok());
    EXPECT_LT(store->Stats().segments, before);
    EXPECT_LT(mem_.ListDir(kDir)->size(), files_before->size());
    EXPECT_EQ(store->Read(Address(10)).status().code(), Code::kTrimmed);
    EXPECT_EQ(store->Read(Address(149)).status().code(), Code::kTrimmed);
    EXPECT_TRUE(store->Read(Address(150)).ok());
    EXPECT_EQ(store->AppendSync(MakeRecord(3, "late")).code(), Code::kTrimmed);
    EXPECT_EQ(store->StreamAddresses(s, Address(0), Address(1000)).size(), 50u);
    EXPECT_EQ(store->ListAddresses(Address(0), Address(1000), 1000).front(), Address(150));
    EXPECT_TRUE(store->Trim(Address(100)).ok());  // lower mark: no-op
    EXPECT_EQ(store->Stats().trim_mark, 150u);
  }
  RecoveryReport report;
  auto store = OpenStore(o, &report);
  EXPECT_EQ(store->Stats().trim_mark, 150u);
  EXPECT_EQ(report.records, 50u);
  EXPECT_EQ(store->Read(Address(10)).status().code(), Code::kTrimmed);
  for (uint64_t i = 150; i < 200; ++i) ASSERT_TRUE(store->Read(Address(i)).ok()) << i;
}

TEST_F(SegmentStoreTest, SealedEpochPersistsAndNeverDecreases) {
  {
    auto store = OpenStore();
    EXPECT_EQ(store->sealed_epoch(), Epoch(0));
    EXPECT_EQ(*store->SetSealedEpoch(Epoch(5)), Epoch(5));
    EXPECT_EQ(*store->SetSealedEpoch(Epoch(3)), Epoch(5));
    EXPECT_EQ(store->sealed_epoch(), Epoch(5));
  }
  auto store = OpenStore();
  EXPECT_EQ(store->sealed_epoch(), Epoch(5));
  EXPECT_EQ(*store->SetSealedEpoch(Epoch(7)), Epoch(7));
}

TEST_F(SegmentStoreTest, FlushWaitsForEarlierAppends) {
  auto store = OpenStore();
  std::atomic<int> done{0};
  for (uint64_t i = 0; i < 50; ++i) {
    store->Append({MakeRecord(i, "x")}, [&](std::vector<Status> s) {
      EXPECT_TRUE(s[0].ok());
      done++;
    });
  }
  store->Flush();
  EXPECT_EQ(done.load(), 50);
}

TEST_F(SegmentStoreTest, DestructorDrainsPendingAppends) {
  std::atomic<int> ok{0};
  {
    auto store = OpenStore();
    for (uint64_t i = 0; i < 100; ++i) {
      store->Append({MakeRecord(i, "x")}, [&](std::vector<Status> s) { ok += s[0].ok(); });
    }
  }
  EXPECT_EQ(ok.load(), 100);
  auto store = OpenStore();
  EXPECT_EQ(store->Stats().entries, 100u);
}

// The real file system, with each write engine (pwritev + fdatasync, and
// io_uring writes linked to fdatasync).
class SegmentStorePosixTest : public ::testing::TestWithParam<WriteEngine> {};

TEST_P(SegmentStorePosixTest, WritesRollsAndRecoversOnDisk) {
  char tmpl[] = "/tmp/tally-segstore-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  PosixFileSystem fs(GetParam());
  SegmentStoreOptions o;
  o.dir = dir + "/unit";
  o.env = DefaultEnv();
  o.env.fs = &fs;
  o.segment_bytes = 256 << 10;
  StreamId s = StreamId::FromName("posix");
  constexpr uint64_t kRecords = 20000;
  {
    auto store = SegmentStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    std::atomic<uint64_t> acked{0};
    for (uint64_t i = 0; i < kRecords; i += 500) {
      std::vector<Record> batch;
      for (uint64_t j = i; j < i + 500; ++j) batch.push_back(MakeRecord(j, PayloadFor(j, 64), {s}));
      (*store)->Append(std::move(batch), [&](std::vector<Status> st) {
        for (const Status& x : st) acked += x.ok();
      });
    }
    (*store)->Flush();
    EXPECT_EQ(acked.load(), kRecords);
  }
  RecoveryReport report;
  auto store = SegmentStore::Open(o, &report);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  EXPECT_EQ(report.records, kRecords);
  EXPECT_GT(report.segments, 3u);
  EXPECT_LT(report.scanned_records, kRecords);
  for (uint64_t i = 0; i < kRecords; i += 7) {
    auto r = (*store)->Read(Address(i));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->payload, PayloadFor(i, 64));
  }
  EXPECT_EQ((*store)->StreamAddresses(s, Address(0), kMaxAddress).size(), kRecords);
  ASSERT_TRUE((*store)->Trim(Address(kRecords / 2)).ok());
  EXPECT_EQ((*store)->Read(Address(1)).status().code(), Code::kTrimmed);
  store->reset();
  std::filesystem::remove_all(dir);
}

INSTANTIATE_TEST_SUITE_P(Engines, SegmentStorePosixTest,
                         ::testing::Values(WriteEngine::kSync, WriteEngine::kIoUring),
                         [](const ::testing::TestParamInfo<WriteEngine>& info) {
                           return info.param == WriteEngine::kSync ? "Sync" : "IoUring";
                         });

}  // namespace
}  // namespace tally::log
