// The store times each group commit (write + fdatasync) into
// StoreStats::commit. A file system whose synced writes move the store's
// manual clock makes those durations exact.

#include <gtest/gtest.h>

#include <atomic>

#include "segment_store_test_util.h"

namespace tally::log::testing {
namespace {

// Forwards to `base`; a synced Write moves `clock` on by `sync_nanos`.
class SlowSyncFileSystem final : public FileSystem {
 public:
  SlowSyncFileSystem(FileSystem* base, ManualClock* clock) : base_(base), clock_(clock) {}
  void set_sync_micros(int64_t us) { sync_nanos_ = us * 1000; }

  Result<std::unique_ptr<File>> Open(const std::string& path, OpenOptions options) override {
    TALLY_ASSIGN_OR_RETURN(auto f, base_->Open(path, options));
    return std::unique_ptr<File>(new SlowFile(std::move(f), this));
  }
  Status Remove(const std::string& path) override { return base_->Remove(path); }
  Status Rename(const std::string& from, const std::string& to) override {
    return base_->Rename(from, to);
  }
  Status CreateDirs(const std::string& path) override { return base_->CreateDirs(path); }
  Result<std::vector<std::string>> ListDir(const std::string& path) override {
    return base_->ListDir(path);
  }
  bool Exists(const std::string& path) override { return base_->Exists(path); }
  Status SyncDir(const std::string& path) override { return base_->SyncDir(path); }

 private:
  class SlowFile final : public File {
   public:
    SlowFile(std::unique_ptr<File> f, SlowSyncFileSystem* fs) : f_(std::move(f)), fs_(fs) {}
    Result<size_t> Read(uint64_t offset, std::span<char> out) override {
      return f_->Read(offset, out);
    }
    Status Write(uint64_t offset, std::span<const ConstBuffer> bufs, bool sync) override {
      Status st = f_->Write(offset, bufs, sync);
      if (sync) fs_->clock_->Advance(fs_->sync_nanos_.load());
      return st;
    }
    Status Sync() override { return f_->Sync(); }
    Result<uint64_t> Size() override { return f_->Size(); }
    Status Truncate(uint64_t size) override { return f_->Truncate(size); }
    const std::string& path() const override { return f_->path(); }

   private:
    std::unique_ptr<File> f_;
    SlowSyncFileSystem* fs_;
  };

  FileSystem* base_;
  ManualClock* clock_;
  std::atomic<int64_t> sync_nanos_{0};
};

class CommitLatencyTest : public StoreFixture {
 protected:
  SegmentStoreOptions SlowOptions() {
    SegmentStoreOptions o = Options();
    o.env.fs = &slow_;
    o.zero_ahead_bytes = 0;  // its synced writes would move the clock too
    return o;
  }
  SlowSyncFileSystem slow_{&fault_, &clock_};
};

size_t BucketOf(uint64_t micros) {
  size_t i = 0;
  while (micros > CommitLatency::kBucketLeUs[i]) ++i;
  return i;
}

void ExpectTimedCommits(SegmentStore& store, SlowSyncFileSystem& slow) {
  const StoreStats before = store.Stats();
  EXPECT_EQ(before.commit.commits, 0u);
  EXPECT_EQ(before.uptime_ms, 0u);

  slow.set_sync_micros(700);
  for (const Status& st :
       AppendAndWait(store, {MakeRecord(1, "a"), MakeRecord(2, "bb"), MakeRecord(3, "ccc")})) {
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  slow.set_sync_micros(12'000);
  ASSERT_TRUE(AppendAndWait(store, {MakeRecord(4, "d")})[0].ok());
  slow.set_sync_micros(50);
  for (const Status& st : AppendAndWait(store, {MakeRecord(5, "e"), MakeRecord(6, "f")})) {
    ASSERT_TRUE(st.ok()) << st.ToString();
  }
  // A refused record is not committed and not counted.
  EXPECT_EQ(AppendAndWait(store, {MakeRecord(6, "again")})[0].code(), Code::kAlreadyWritten);

  const StoreStats s = store.Stats();
  const CommitLatency& c = s.commit;
  EXPECT_EQ(c.commits, 3u);
  EXPECT_EQ(c.records, 6u);
  EXPECT_EQ(c.bytes, s.bytes);  // one segment holding exactly these records
  EXPECT_EQ(c.sum_us, 12'750u);
  EXPECT_EQ(c.max_us, 12'000u);
  std::array<uint64_t, CommitLatency::kBucketLeUs.size()> want{};
  ++want[BucketOf(700)];
  ++want[BucketOf(12'000)];
  ++want[BucketOf(50)];
  EXPECT_EQ(c.buckets, want);
  EXPECT_EQ(CommitLatency::kBucketLeUs[BucketOf(700)], 750u);
  EXPECT_EQ(CommitLatency::kBucketLeUs[BucketOf(12'000)], 20'000u);
  EXPECT_EQ(CommitLatency::kBucketLeUs[BucketOf(50)], 100u);
  EXPECT_EQ(s.uptime_ms, 12u);  // the clock moved only inside the three commits
}

TEST_F(CommitLatencyTest, EachGroupCommitIsTimedIntoItsBucket) {
  auto store = OpenStore(SlowOptions());
  ASSERT_NE(store, nullptr);
  ExpectTimedCommits(*store, slow_);
}

TEST_F(CommitLatencyTest, InlineWritesAreTimedTheSameWay) {
  SegmentStoreOptions o = SlowOptions();
  o.inline_writes = true;
  auto store = OpenStore(o);
  ASSERT_NE(store, nullptr);
  ExpectTimedCommits(*store, slow_);
}

TEST_F(CommitLatencyTest, BucketBoundsAscendAndEndUnbounded) {
  const auto& le = CommitLatency::kBucketLeUs;
  for (size_t i = 1; i < le.size(); ++i) EXPECT_LT(le[i - 1], le[i]) << i;
  EXPECT_EQ(le.back(), UINT64_MAX);
  CommitLatency c;
  c.Add(UINT64_MAX - 1, 1, 1);  // absurdly slow still lands in the last bucket
  EXPECT_EQ(c.buckets.back(), 1u);
}

}  // namespace
}  // namespace tally::log::testing
