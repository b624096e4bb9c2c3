// SegmentStore::Wipe (what log.reset runs): the wiped store is empty and
// writable again, keeps (or raises) its sealed epoch, and a crash at any
// step of the wipe reopens either intact or empty, never half wiped.
// Segment files live on a FaultInjectionFileSystem; RocksDB metadata on an
// in-memory Env wrapped so that its WAL can be made to fail.

#include <gtest/gtest.h>
#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "metadata_store.h"
#include "segment_store_test_util.h"
#include "tally/log/log_unit.h"
#include "tally/proto/logunit.pb.h"

namespace tally::log {
namespace {

using testing::AppendAndWait;
using testing::MakeRecord;
using testing::PayloadFor;

const StreamId kEven = StreamId::FromName("even");
const StreamId kOdd = StreamId::FromName("odd");

// A RocksDB file system whose WAL ("*.log") can be made to fail: `Arm`
// lets `syncs_before` WAL syncs succeed, then fails every WAL append (or,
// with sync_only, every WAL sync: the bytes are appended but the write
// reports an error) until Disarm.
class FailingWalFs : public rocksdb::FileSystemWrapper {
 public:
  explicit FailingWalFs(const std::shared_ptr<rocksdb::FileSystem>& base)
      : FileSystemWrapper(base) {}
  const char* Name() const override { return "FailingWalFs"; }

  void Arm(int syncs_before, bool sync_only) {
    syncs_left_ = syncs_before;
    sync_only_ = sync_only;
    armed_ = true;
  }
  void Disarm() { armed_ = false; }

  rocksdb::IOStatus NewWritableFile(const std::string& f, const rocksdb::FileOptions& o,
                                    std::unique_ptr<rocksdb::FSWritableFile>* r,
                                    rocksdb::IODebugContext* dbg) override {
    rocksdb::IOStatus s = target()->NewWritableFile(f, o, r, dbg);
    if (s.ok() && f.size() > 4 && f.compare(f.size() - 4, 4, ".log") == 0) {
      *r = std::make_unique<WalFile>(std::move(*r), this);
    }
    return s;
  }

 private:
  class WalFile : public rocksdb::FSWritableFileOwnerWrapper {
   public:
    WalFile(std::unique_ptr<rocksdb::FSWritableFile> f, FailingWalFs* fs)
        : FSWritableFileOwnerWrapper(std::move(f)), fs_(fs) {}
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->Failing(false)) return rocksdb::IOStatus::IOError("injected WAL append failure");
      return FSWritableFileOwnerWrapper::Append(d, o, dbg);
    }
    rocksdb::IOStatus Append(const rocksdb::Slice& d, const rocksdb::IOOptions& o,
                             const rocksdb::DataVerificationInfo& v,
                             rocksdb::IODebugContext* dbg) override {
      if (fs_->Failing(false)) return rocksdb::IOStatus::IOError("injected WAL append failure");
      return FSWritableFileOwnerWrapper::Append(d, o, v, dbg);
    }
    rocksdb::IOStatus Sync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->Failing(true)) return rocksdb::IOStatus::IOError("injected WAL sync failure");
      return FSWritableFileOwnerWrapper::Sync(o, dbg);
    }
    rocksdb::IOStatus Fsync(const rocksdb::IOOptions& o, rocksdb::IODebugContext* dbg) override {
      if (fs_->Failing(true)) return rocksdb::IOStatus::IOError("injected WAL sync failure");
      return FSWritableFileOwnerWrapper::Fsync(o, dbg);
    }

   private:
    FailingWalFs* fs_;
  };

  // Whether this WAL append (is_sync false) or sync should fail.
  bool Failing(bool is_sync) {
    if (!armed_) return false;
    if (syncs_left_ > 0) {
      if (is_sync) --syncs_left_;
      return false;
    }
    return is_sync == sync_only_;
  }

  std::atomic<bool> armed_{false};
  std::atomic<int> syncs_left_{0};
  std::atomic<bool> sync_only_{false};
};

class WipeTest : public testing::StoreFixture {
 protected:
  static constexpr size_t kPayload = 40;

  SegmentStoreOptions WipeOptions(const std::string& dir = kDir, bool inline_writes = false) {
    SegmentStoreOptions o = Options();
    o.dir = dir;
    o.metadata_env = wal_env_.get();
    o.inline_writes = inline_writes;
    // Several segments per test: closed ones (index in RocksDB) and an open one.
    o.segment_bytes = 1024;
    // Their indexes in parts (of at least 4 entries: one 10-record group).
    o.index_part_entries = 4;
    return o;
  }

  // Appends [from, to), each on stream "even" or "odd", all acknowledged.
  void Fill(SegmentStore& store, uint64_t from, uint64_t to) {
    testing::AppendInTens(store, from, to, kPayload,
                          [&](uint64_t a) { return std::vector<StreamId>{a % 2 ? kOdd : kEven}; });
  }

  std::vector<std::string> SegmentFiles(const std::string& dir) {
    std::vector<std::string> out;
    auto names = mem_.ListDir(dir);
    EXPECT_TRUE(names.ok()) << names.status().ToString();
    if (!names.ok()) return out;
    for (const std::string& n : *names) {
      if (n.rfind("seg-", 0) == 0) out.push_back(n);
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Segment indexes stored in RocksDB (the store must be closed).
  std::vector<uint32_t> StoredIndexes(const std::string& dir) {
    auto meta = MetadataStore::Open(dir + "/metadata", wal_env_.get());
    EXPECT_TRUE(meta.ok()) << meta.status().ToString();
    if (!meta.ok()) return {};
    auto ids = (*meta)->ListSegmentIndexes();
    EXPECT_TRUE(ids.ok());
    return ids.ok() ? *ids : std::vector<uint32_t>{};
  }

  void ExpectIntact(SegmentStore& store, uint64_t n) {
    EXPECT_EQ(store.Stats().entries, n);
    EXPECT_EQ(store.Stats().local_tail, n);
    for (uint64_t a = 0; a < n; ++a) {
      auto r = store.Read(Address(a));
      ASSERT_TRUE(r.ok()) << "address " << a << ": " << r.status().ToString();
      ASSERT_EQ(r->payload, PayloadFor(a, kPayload));
    }
    EXPECT_EQ(store.StreamAddresses(kEven, Address(0), Address(n)).size(), (n + 1) / 2);
  }

  // Nothing of [0, n) is left, in memory or on disk, and the old addresses
  // can be written again.
  void ExpectEmptyAndWritable(SegmentStore& store, uint64_t n, const std::string& dir = kDir) {
    StoreStats s = store.Stats();
    EXPECT_EQ(s.entries, 0u);
    EXPECT_EQ(s.local_tail, 0u);
    EXPECT_EQ(s.trim_mark, 0u);
    EXPECT_EQ(s.bytes, 0u);
    for (uint64_t a = 0; a < n; ++a) {
      ASSERT_EQ(store.Read(Address(a)).status().code(), Code::kUnwritten) << "address " << a;
    }
    EXPECT_TRUE(store.Streams().empty());
    EXPECT_TRUE(store.StreamAddresses(kEven, Address(0), Address(n)).empty());
    EXPECT_TRUE(store.ListAddresses(Address(0), Address(n), 100).empty());
    EXPECT_EQ(SegmentFiles(dir), std::vector<std::string>{"seg-00000000000000000001.log"});
    ASSERT_TRUE(store.AppendSync(MakeRecord(0, "new zero", {kOdd})).ok());
    ASSERT_TRUE(store.AppendSync(MakeRecord(n / 2, "new middle")).ok());
    EXPECT_EQ(store.Read(Address(0))->payload, "new zero");
    EXPECT_EQ(store.StreamAddresses(kOdd, Address(0), Address(n)),
              std::vector<Address>{Address(0)});
    EXPECT_EQ(store.Stats().entries, 2u);
  }

  std::shared_ptr<FailingWalFs> wal_fs_ =
      std::make_shared<FailingWalFs>(rocks_env_->GetFileSystem());
  std::unique_ptr<rocksdb::Env> wal_env_ = rocksdb::NewCompositeEnv(wal_fs_);
};

TEST_F(WipeTest, WipedStoreIsEmptyWritableAndStaysSoAfterReopen) {
  constexpr uint64_t kN = 200;
  auto store = OpenStore(WipeOptions());
  Fill(*store, 0, kN);
  ASSERT_TRUE(store->Trim(Address(30)).ok());
  ASSERT_TRUE(store->SetSealedEpoch(Epoch(3)).ok());
  ASSERT_GT(store->Stats().segments, 3u);

  auto stats = store->Wipe(Epoch(5));
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->entries, 0u);
  EXPECT_EQ(stats->local_tail, 0u);
  EXPECT_EQ(stats->trim_mark, 0u);
  EXPECT_EQ(stats->segments, 1u);
  EXPECT_EQ(stats->bytes, 0u);
  EXPECT_EQ(store->sealed_epoch(), Epoch(5));
  // Below the old trim mark too: unwritten, not trimmed, and writable.
  EXPECT_EQ(store->Read(Address(10)).status().code(), Code::kUnwritten);
  ExpectEmptyAndWritable(*store, kN);
  store.reset();
  EXPECT_TRUE(StoredIndexes(kDir).empty());

  store = OpenStore(WipeOptions());
  EXPECT_EQ(store->Stats().entries, 2u);
  Fill(*store, kN / 2 + 1, kN);  // and rolls segments again
  store.reset();
  store = OpenStore(WipeOptions());
  EXPECT_EQ(store->sealed_epoch(), Epoch(5));
  EXPECT_EQ(store->Stats().trim_mark, 0u);
  EXPECT_EQ(store->Stats().entries, 2u + (kN - kN / 2 - 1));
  EXPECT_EQ(store->Read(Address(0))->payload, "new zero");
  EXPECT_EQ(store->Read(Address(1)).status().code(), Code::kUnwritten);
  EXPECT_EQ(store->Read(Address(150))->payload, PayloadFor(150, kPayload));
}

TEST_F(WipeTest, SealedEpochIsKeptWhenHigher) {
  auto store = OpenStore(WipeOptions());
  Fill(*store, 0, 20);
  ASSERT_TRUE(store->SetSealedEpoch(Epoch(7)).ok());
  ASSERT_TRUE(store->Wipe(Epoch(3)).ok());
  EXPECT_EQ(store->sealed_epoch(), Epoch(7));
  store.reset();
  store = OpenStore(WipeOptions());
  EXPECT_EQ(store->sealed_epoch(), Epoch(7));
  EXPECT_EQ(store->Stats().entries, 0u);
}

TEST_F(WipeTest, EmptyStoreAndRepeatedWipes) {
  auto store = OpenStore(WipeOptions());
  ASSERT_TRUE(store->Wipe(Epoch(1)).ok());
  ASSERT_TRUE(store->Wipe(Epoch(1)).ok());
  Fill(*store, 0, 50);
  ASSERT_TRUE(store->Wipe(Epoch(2)).ok());
  ExpectEmptyAndWritable(*store, 50);
}

TEST_F(WipeTest, InlineWrites) {
  auto store = OpenStore(WipeOptions("/inline", true));
  Fill(*store, 0, 120);
  ASSERT_TRUE(store->Trim(Address(10)).ok());
  auto stats = store->Wipe(Epoch(2));
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->entries, 0u);
  ExpectEmptyAndWritable(*store, 120, "/inline");
  store.reset();
  store = OpenStore(WipeOptions("/inline", true));
  EXPECT_EQ(store->Stats().entries, 2u);
  EXPECT_EQ(store->sealed_epoch(), Epoch(2));
}

// Appends racing a wipe are wiped (admitted before), refused with
// Unavailable (during) or land (after); none is lost once acknowledged
// after the wipe, and none from before survives it.
TEST_F(WipeTest, RacingAppendsAreWipedRefusedOrKept) {
  for (bool inline_writes : {false, true}) {
    const std::string dir = inline_writes ? "/race-inline" : "/race";
    auto store = OpenStore(WipeOptions(dir, inline_writes));
    constexpr uint64_t kPerThread = 400;
    std::atomic<bool> wiped{false};
    struct Outcome {
      Status status;
      bool after_wipe = false;  // submitted after Wipe returned
    };
    std::vector<std::vector<Outcome>> outcomes(2, std::vector<Outcome>(kPerThread));
    std::vector<std::thread> writers;
    for (int t = 0; t < 2; ++t) {
      writers.emplace_back([&, t] {
        for (uint64_t i = 0; i < kPerThread; ++i) {
          const uint64_t a = t * kPerThread + i;
          outcomes[t][i].after_wipe = wiped.load();
          outcomes[t][i].status = store->AppendSync(MakeRecord(a, PayloadFor(a, kPayload)));
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    ASSERT_TRUE(store->Wipe(Epoch(1)).ok());
    wiped = true;
    for (auto& w : writers) w.join();
    for (int t = 0; t < 2; ++t) {
      for (uint64_t i = 0; i < kPerThread; ++i) {
        const uint64_t a = t * kPerThread + i;
        const Outcome& o = outcomes[t][i];
        auto r = store->Read(Address(a));
        if (o.after_wipe) {
          ASSERT_TRUE(o.status.ok()) << a << ": " << o.status.ToString();
          ASSERT_TRUE(r.ok()) << a << ": " << r.status().ToString();
        } else if (r.ok()) {
          ASSERT_TRUE(o.status.ok()) << a;
        } else {
          ASSERT_EQ(r.status().code(), Code::kUnwritten) << a;
          ASSERT_TRUE(o.status.ok() || o.status.code() == Code::kUnavailable)
              << a << ": " << o.status.ToString();
        }
      }
    }
    const uint64_t held = store->Stats().entries;
    store.reset();
    store = OpenStore(WipeOptions(dir, inline_writes));
    EXPECT_EQ(store->Stats().entries, held);
  }
}

// --- crashes ---------------------------------------------------------------

class WipeCrashTest : public WipeTest {
 protected:
  static constexpr uint64_t kN = 150;

  // A store with kN entries in several segments, trimmed at 20 and sealed
  // at 2; returns it open.
  std::unique_ptr<SegmentStore> Prepared(const std::string& dir) {
    auto store = OpenStore(WipeOptions(dir));
    Fill(*store, 0, kN);
    EXPECT_TRUE(store->Trim(Address(20)).ok());
    EXPECT_TRUE(store->SetSealedEpoch(Epoch(2)).ok());
    // The segment after the open one is created ahead of its roll (by the
    // indexer thread, segment_writer.cc): wait for it, so that the files
    // the tests count do not change under them.
    for (int i = 0; i < 1000 && SegmentFiles(dir).size() != store->Stats().segments + 1; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    EXPECT_EQ(SegmentFiles(dir).size(), store->Stats().segments + 1);
    return store;
  }

  // A power cut: the process dies (the store object goes away without
  // further I/O of note), unsynced file data and unsynced directory
  // entries are lost, then the faults are cleared and the store reopens.
  std::unique_ptr<SegmentStore> CrashAndReopen(std::unique_ptr<SegmentStore> store,
                                               const std::string& dir) {
    store.reset();
    EXPECT_TRUE(fault_.DropUnsyncedData().ok());
    fault_.ClearFailures();
    wal_fs_->Disarm();
    return OpenStore(WipeOptions(dir));
  }

  void ExpectIntactAfterTrim(SegmentStore& store) {
    EXPECT_EQ(store.Stats().trim_mark, 20u);
    EXPECT_EQ(store.Stats().entries, kN - 20);
    for (uint64_t a = 20; a < kN; ++a) {
      auto r = store.Read(Address(a));
      ASSERT_TRUE(r.ok()) << "address " << a << ": " << r.status().ToString();
      ASSERT_EQ(r->payload, PayloadFor(a, kPayload));
    }
    EXPECT_EQ(store.AppendSync(MakeRecord(30, "again")).code(), Code::kAlreadyWritten);
  }

  // After a wipe that failed past its marker: empty in memory, writes
  // refused (a write now would be wiped by the next open).
  void ExpectEmptyAndRefusingWrites(SegmentStore& store) {
    EXPECT_EQ(store.Stats().entries, 0u);
    EXPECT_EQ(store.Read(Address(50)).status().code(), Code::kUnwritten);
    Status st = store.AppendSync(MakeRecord(kN + 1, "refused"));
    EXPECT_EQ(st.code(), Code::kIoError) << st.ToString();
    EXPECT_NE(st.message().find("reopen"), std::string::npos) << st.message();
  }
};

TEST_F(WipeCrashTest, CrashAfterTheMarkerFinishesTheWipeOnOpen) {
  const std::string dir = "/marker";
  Prepared(dir).reset();
  ASSERT_GT(SegmentFiles(dir).size(), 3u);
  {
    // Exactly the state of a crash right after step 2: the marker (and
    // the raised epoch) durable, nothing deleted yet.
    auto meta = MetadataStore::Open(dir + "/metadata", wal_env_.get());
    ASSERT_TRUE(meta.ok());
    ASSERT_TRUE((*meta)->BeginWipe(4).ok());
  }
  RecoveryReport report;
  auto store = OpenStore(WipeOptions(dir), &report);
  EXPECT_EQ(report.records, 0u);
  EXPECT_EQ(store->sealed_epoch(), Epoch(4));
  ExpectEmptyAndWritable(*store, kN, dir);
  store.reset();
  EXPECT_TRUE(StoredIndexes(dir).empty());
  // The marker is gone: the next open keeps what was written since.
  store = OpenStore(WipeOptions(dir));
  EXPECT_EQ(store->Stats().entries, 2u);
}

TEST_F(WipeCrashTest, FailedMarkerWriteDeletesNothing) {
  const std::string dir = "/no-marker";
  auto store = Prepared(dir);
  wal_fs_->Arm(0, /*sync_only=*/false);  // the marker never reaches the WAL
  auto r = store->Wipe(Epoch(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIoError);
  EXPECT_NE(r.status().message().find("nothing was deleted"), std::string::npos)
      << r.status().ToString();
  // Still served, but writes wait for a reopen to learn the marker's fate.
  EXPECT_EQ(store->Read(Address(40))->payload, PayloadFor(40, kPayload));
  EXPECT_EQ(store->AppendSync(MakeRecord(kN, "x")).code(), Code::kIoError);
  store = CrashAndReopen(std::move(store), dir);
  EXPECT_EQ(store->sealed_epoch(), Epoch(2));
  ExpectIntactAfterTrim(*store);
  EXPECT_TRUE(store->AppendSync(MakeRecord(kN, "x")).ok());
}

TEST_F(WipeCrashTest, MarkerThatReachedTheDiskDespiteAnErrorWipesOnOpen) {
  const std::string dir = "/unsure-marker";
  auto store = Prepared(dir);
  wal_fs_->Arm(0, /*sync_only=*/true);  // in the WAL, but the sync fails
  auto r = store->Wipe(Epoch(5));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kIoError);
  EXPECT_EQ(store->AppendSync(MakeRecord(kN, "x")).code(), Code::kIoError);
  store = CrashAndReopen(std::move(store), dir);
  EXPECT_EQ(store->sealed_epoch(), Epoch(5));
  ExpectEmptyAndWritable(*store, kN, dir);
}

TEST_F(WipeCrashTest, CrashWhileDeletingEachSegmentFileReopensEmpty) {
  size_t files = 0;
  for (size_t k = 0;; ++k) {
    const std::string dir = "/del-" + std::to_string(k);
    auto store = Prepared(dir);
    const std::vector<std::string> segs = SegmentFiles(dir);
    files = segs.size();
    if (k >= files) break;
    // Deletions run in name order: the first k files go, the k-th fails.
    fault_.FailNext(FaultOp::kRemove, 1000, segs[k]);
    auto r = store->Wipe(Epoch(3));
    ASSERT_FALSE(r.ok()) << "k=" << k;
    EXPECT_EQ(r.status().code(), Code::kIoError);
    EXPECT_NE(r.status().message().find(segs[k]), std::string::npos) << r.status().ToString();
    EXPECT_EQ(SegmentFiles(dir).size(), files - k);
    ExpectEmptyAndRefusingWrites(*store);
    store = CrashAndReopen(std::move(store), dir);
    EXPECT_EQ(store->sealed_epoch(), Epoch(3));
    ExpectEmptyAndWritable(*store, kN, dir);
  }
  EXPECT_GT(files, 3u);
}

TEST_F(WipeCrashTest, FailedDirectorySyncReopensEmpty) {
  const std::string dir = "/syncdir";
  auto store = Prepared(dir);
  fault_.FailNext(FaultOp::kSyncDir, 1, dir);
  auto r = store->Wipe(Epoch(3));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("syncing the directory"), std::string::npos)
      << r.status().ToString();
  ExpectEmptyAndRefusingWrites(*store);
  store = CrashAndReopen(std::move(store), dir);
  ExpectEmptyAndWritable(*store, kN, dir);
}

TEST_F(WipeCrashTest, FailedMetadataClearReopensEmpty) {
  // The marker's write succeeds, the one clearing indexes, trim mark and
  // marker fails: before (append) or after (sync) its bytes are in the WAL.
  for (bool sync_only : {false, true}) {
    const std::string dir = sync_only ? "/clear-sync" : "/clear-append";
    auto store = Prepared(dir);
    wal_fs_->Arm(1, sync_only);
    auto r = store->Wipe(Epoch(3));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kIoError);
    ExpectEmptyAndRefusingWrites(*store);
    store = CrashAndReopen(std::move(store), dir);
    EXPECT_EQ(store->sealed_epoch(), Epoch(3));
    ExpectEmptyAndWritable(*store, kN, dir);
    store.reset();
    EXPECT_TRUE(StoredIndexes(dir).empty());
  }
}

TEST_F(WipeCrashTest, FailedNewSegmentAfterTheWipeReopensEmpty) {
  const std::string dir = "/newseg";
  auto store = Prepared(dir);
  fault_.FailNext(FaultOp::kOpen, 1, "seg-");
  auto r = store->Wipe(Epoch(3));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("creating segment 1"), std::string::npos)
      << r.status().ToString();
  ExpectEmptyAndRefusingWrites(*store);
  store = CrashAndReopen(std::move(store), dir);
  ExpectEmptyAndWritable(*store, kN, dir);
}

TEST_F(WipeCrashTest, WipingAgainFinishesAFailedWipeWithoutReopen) {
  const std::string dir = "/retry";
  auto store = Prepared(dir);
  fault_.FailNext(FaultOp::kRemove, 1, "seg-");
  ASSERT_FALSE(store->Wipe(Epoch(3)).ok());
  ExpectEmptyAndRefusingWrites(*store);
  auto r = store->Wipe(Epoch(3));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectEmptyAndWritable(*store, kN, dir);
  store = CrashAndReopen(std::move(store), dir);
  EXPECT_EQ(store->Stats().entries, 2u);
}

// A log unit in the single-threaded modes answers log.reset inline.
TEST_F(WipeTest, LogUnitResetInline) {
  LogUnitOptions o;
  o.store = WipeOptions("/unit", true);
  o.io_threads = 0;
  auto unit = LogUnit::Open(o);
  ASSERT_TRUE(unit.ok()) << unit.status().ToString();
  Fill((*unit)->store(), 0, 30);
  net::ServiceRegistry registry;
  (*unit)->Register(registry);
  auto call = [&](uint64_t epoch) {
    proto::ResetRequest req;
    req.set_epoch(epoch);
    std::optional<std::pair<Status, std::string>> answer;
    (*registry.Find("log.reset"))(req.SerializeAsString(), [&](Status st, std::string out) {
      answer.emplace(std::move(st), std::move(out));
    });
    EXPECT_TRUE(answer.has_value()) << "log.reset did not answer inline";
    return answer.value_or(std::make_pair(Internal("no answer"), std::string()));
  };
  auto [st, bytes] = call(4);
  ASSERT_TRUE(st.ok()) << st.ToString();
  proto::ResetResponse resp;
  ASSERT_TRUE(resp.ParseFromString(bytes));
  EXPECT_EQ(resp.sealed_epoch(), 4u);
  EXPECT_EQ(resp.entries_dropped(), 30u);
  EXPECT_GT(resp.bytes_dropped(), 30u * kPayload);
  EXPECT_EQ((*unit)->store().Stats().entries, 0u);
  EXPECT_EQ(call(3).first.code(), Code::kWrongEpoch);
}

}  // namespace
}  // namespace tally::log
