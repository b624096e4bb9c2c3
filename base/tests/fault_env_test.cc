#include "tally/base/fault_env.h"

#include <gtest/gtest.h>

#include <bit>
#include <string>
#include <thread>
#include <vector>

#include "tally/base/mem_env.h"

namespace tally {
namespace {

class FaultEnvTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(fs_.CreateDirs("/d").ok());
    ASSERT_TRUE(fs_.SyncDir("/d").ok());
  }

  // Creates `path` and makes its directory entry durable.
  std::unique_ptr<File> CreateDurable(const std::string& path) {
    auto f = Create(path);
    EXPECT_TRUE(fs_.SyncDir("/d").ok());
    return f;
  }

  std::unique_ptr<File> Create(const std::string& path) {
    auto f = fs_.Open(path, OpenOptions{.create = true});
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return f.ok() ? std::move(f).value() : nullptr;
  }

  static Status WriteStr(File* f, uint64_t offset, std::string_view s, bool sync) {
    ConstBuffer b(s.data(), s.size());
    return f->Write(offset, std::span<const ConstBuffer>(&b, 1), sync);
  }

  // Contents as the base file system holds them.
  std::string Contents(const std::string& path) {
    auto f = mem_.Open(path, OpenOptions{.read_only = true});
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    if (!f.ok()) return "";
    std::string out(*(*f)->Size(), '\0');
    EXPECT_EQ(*(*f)->Read(0, std::span<char>(out.data(), out.size())), out.size());
    return out;
  }

  MemFileSystem mem_;
  FaultInjectionFileSystem fs_{&mem_};
};

TEST_F(FaultEnvTest, PowerCutDropsUnsyncedBytesKeepsSynced) {
  auto f = CreateDurable("/d/seg-1");
  ASSERT_TRUE(WriteStr(f.get(), 0, "synced", /*sync=*/true).ok());
  ASSERT_TRUE(WriteStr(f.get(), 6, "-lost", /*sync=*/false).ok());
  EXPECT_EQ(Contents("/d/seg-1"), "synced-lost");
  EXPECT_EQ(fs_.SyncedSize("/d/seg-1"), 6u);

  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(Contents("/d/seg-1"), "synced");
  // A power cut is idempotent on durable data.
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(Contents("/d/seg-1"), "synced");
}

TEST_F(FaultEnvTest, FileSyncMakesEarlierWritesDurable) {
  auto f = CreateDurable("/d/seg-1");
  ASSERT_TRUE(WriteStr(f.get(), 0, "abc", false).ok());
  ASSERT_TRUE(WriteStr(f.get(), 3, "def", false).ok());
  EXPECT_EQ(fs_.SyncedSize("/d/seg-1"), 0u);
  ASSERT_TRUE(f->Sync().ok());
  EXPECT_EQ(fs_.SyncedSize("/d/seg-1"), 6u);
  ASSERT_TRUE(WriteStr(f.get(), 6, "ghi", false).ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(Contents("/d/seg-1"), "abcdef");
}

TEST_F(FaultEnvTest, NewFileWithoutDirSyncVanishes) {
  auto kept = CreateDurable("/d/kept");
  ASSERT_TRUE(WriteStr(kept.get(), 0, "k", true).ok());
  auto lost = Create("/d/lost");
  ASSERT_TRUE(WriteStr(lost.get(), 0, "data synced, entry not", true).ok());
  EXPECT_TRUE(fs_.Exists("/d/lost"));

  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_FALSE(fs_.Exists("/d/lost"));
  EXPECT_TRUE(fs_.Exists("/d/kept"));
  EXPECT_EQ(Contents("/d/kept"), "k");
}

TEST_F(FaultEnvTest, SyncOfAnotherDirDoesNotSaveNewFile) {
  ASSERT_TRUE(fs_.CreateDirs("/e").ok());
  auto f = Create("/d/f");
  ASSERT_TRUE(fs_.SyncDir("/e").ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_FALSE(fs_.Exists("/d/f"));
}

TEST_F(FaultEnvTest, FilesPresentBeforeWrappingAreDurable) {
  {
    auto f = mem_.Open("/d/old", OpenOptions{.create = true});
    ASSERT_TRUE(f.ok());
    ASSERT_TRUE(WriteStr(f->get(), 0, "old", false).ok());
  }
  auto f = fs_.Open("/d/old", OpenOptions{});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(fs_.SyncedSize("/d/old"), 3u);
  ASSERT_TRUE(WriteStr(f->get(), 3, "new", false).ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(Contents("/d/old"), "old");
}

TEST_F(FaultEnvTest, TruncateLowersWhatIsDurable) {
  auto f = CreateDurable("/d/seg");
  ASSERT_TRUE(WriteStr(f.get(), 0, "12345678", true).ok());
  ASSERT_TRUE(f->Truncate(4).ok());
  ASSERT_TRUE(WriteStr(f.get(), 4, "abcd", false).ok());
  EXPECT_EQ(fs_.SyncedSize("/d/seg"), 4u);
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(Contents("/d/seg"), "1234");
}

TEST_F(FaultEnvTest, RenamedNewFileStaysUndurable) {
  auto f = Create("/d/tmp");
  ASSERT_TRUE(WriteStr(f.get(), 0, "x", true).ok());
  ASSERT_TRUE(fs_.Rename("/d/tmp", "/d/final").ok());
  EXPECT_EQ(fs_.SyncedSize("/d/final"), 1u);
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_FALSE(fs_.Exists("/d/final"));

  auto g = Create("/d/tmp2");
  ASSERT_TRUE(WriteStr(g.get(), 0, "y", true).ok());
  ASSERT_TRUE(fs_.Rename("/d/tmp2", "/d/final2").ok());
  ASSERT_TRUE(fs_.SyncDir("/d").ok());
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(Contents("/d/final2"), "y");
}

TEST_F(FaultEnvTest, TearLastWriteKeepsAPrefixOfTheUnsyncedTail) {
  auto f = CreateDurable("/d/seg");
  ASSERT_TRUE(WriteStr(f.get(), 0, "head", true).ok());
  ASSERT_TRUE(WriteStr(f.get(), 4, "0123456789", false).ok());
  ASSERT_TRUE(fs_.TearLastWrite("/d/seg", 3).ok());
  EXPECT_EQ(Contents("/d/seg"), "head012");
  // Keeping more than was written keeps everything.
  ASSERT_TRUE(fs_.TearLastWrite("/d/seg", 100).ok());
  EXPECT_EQ(Contents("/d/seg"), "head012");
  EXPECT_EQ(fs_.TearLastWrite("/d/missing", 1).code(), Code::kNotFound);
}

TEST_F(FaultEnvTest, FlipBitChangesExactlyOneBit) {
  auto f = CreateDurable("/d/seg");
  std::string data = "0123456789abcdef";
  ASSERT_TRUE(WriteStr(f.get(), 0, data, true).ok());
  ASSERT_TRUE(fs_.FlipBit("/d/seg", 5, 3).ok());
  std::string after = Contents("/d/seg");
  ASSERT_EQ(after.size(), data.size());
  int flipped = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    flipped += std::popcount(static_cast<unsigned char>(data[i] ^ after[i]));
  }
  EXPECT_EQ(flipped, 1);
  EXPECT_EQ(static_cast<unsigned char>(data[5] ^ after[5]), 1u << 3);
  // The flip is not a write: durability bookkeeping is unchanged.
  EXPECT_EQ(fs_.SyncedSize("/d/seg"), data.size());

  EXPECT_EQ(fs_.FlipBit("/d/seg", 16, 0).code(), Code::kInvalidArgument);
  EXPECT_EQ(fs_.FlipBit("/d/seg", 0, 8).code(), Code::kInvalidArgument);
}

TEST_F(FaultEnvTest, FailNextFailsExactlyNTimesThenRecovers) {
  auto seg = CreateDurable("/d/seg-1");
  auto meta = CreateDurable("/d/meta");
  fs_.FailNext(FaultOp::kWrite, 2, "seg");
  for (int i = 0; i < 2; ++i) {
    Status s = WriteStr(seg.get(), 0, "x", true);
    EXPECT_EQ(s.code(), Code::kIoError);
    EXPECT_NE(s.message().find("injected fault"), std::string::npos) << s.ToString();
    EXPECT_NE(s.message().find("/d/seg-1"), std::string::npos) << s.ToString();
    EXPECT_TRUE(WriteStr(meta.get(), 0, "m", true).ok());  // other paths unaffected
  }
  EXPECT_TRUE(WriteStr(seg.get(), 0, "x", true).ok());
  EXPECT_EQ(Contents("/d/seg-1"), "x");
}

TEST_F(FaultEnvTest, FailNextCoversEveryOp) {
  auto f = CreateDurable("/d/f");
  ASSERT_TRUE(WriteStr(f.get(), 0, "abc", true).ok());
  char buf[3];

  fs_.FailNext(FaultOp::kOpen, 1);
  EXPECT_FALSE(fs_.Open("/d/f", {}).ok());
  EXPECT_TRUE(fs_.Open("/d/f", {}).ok());

  fs_.FailNext(FaultOp::kRead, 1);
  EXPECT_FALSE(f->Read(0, std::span<char>(buf, 3)).ok());
  EXPECT_TRUE(f->Read(0, std::span<char>(buf, 3)).ok());

  fs_.FailNext(FaultOp::kSync, 1);
  ASSERT_TRUE(WriteStr(f.get(), 3, "d", false).ok());
  EXPECT_FALSE(f->Sync().ok());
  EXPECT_EQ(fs_.SyncedSize("/d/f"), 3u);  // a failed sync makes nothing durable
  EXPECT_TRUE(f->Sync().ok());
  EXPECT_EQ(fs_.SyncedSize("/d/f"), 4u);

  // A synced Write whose sync fails: the bytes are written, not durable.
  fs_.FailNext(FaultOp::kSync, 1);
  EXPECT_FALSE(WriteStr(f.get(), 4, "ef", true).ok());
  EXPECT_EQ(*f->Size(), 6u);
  EXPECT_EQ(fs_.SyncedSize("/d/f"), 4u);
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(*f->Size(), 4u);

  fs_.FailNext(FaultOp::kTruncate, 1);
  EXPECT_FALSE(f->Truncate(1).ok());
  EXPECT_EQ(*f->Size(), 4u);

  fs_.FailNext(FaultOp::kSyncDir, 1);
  EXPECT_FALSE(fs_.SyncDir("/d").ok());
  EXPECT_TRUE(fs_.SyncDir("/d").ok());

  fs_.FailNext(FaultOp::kRename, 1);
  EXPECT_FALSE(fs_.Rename("/d/f", "/d/g").ok());
  EXPECT_TRUE(fs_.Exists("/d/f"));

  fs_.FailNext(FaultOp::kRemove, 3);
  EXPECT_FALSE(fs_.Remove("/d/f").ok());
  fs_.ClearFailures();
  EXPECT_TRUE(fs_.Remove("/d/f").ok());
  EXPECT_FALSE(fs_.Exists("/d/f"));
}

TEST_F(FaultEnvTest, FailedSyncedWriteLeavesDataUndurable) {
  auto f = CreateDurable("/d/f");
  fs_.FailNext(FaultOp::kWrite, 1);
  EXPECT_FALSE(WriteStr(f.get(), 0, "abc", true).ok());
  EXPECT_EQ(fs_.SyncedSize("/d/f"), 0u);
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  EXPECT_EQ(Contents("/d/f"), "");
}

TEST_F(FaultEnvTest, ConcurrentWritersAreTrackedPerFile) {
  constexpr int kThreads = 4;
  constexpr int kWrites = 200;
  std::vector<std::unique_ptr<File>> files;
  for (int t = 0; t < kThreads; ++t) files.push_back(Create("/d/f" + std::to_string(t)));
  ASSERT_TRUE(fs_.SyncDir("/d").ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kWrites; ++i) {
        // Every other write is synced; the last one is not.
        EXPECT_TRUE(WriteStr(files[t].get(), i, "z", i % 2 == 0).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_TRUE(fs_.DropUnsyncedData().ok());
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(Contents("/d/f" + std::to_string(t)), std::string(kWrites - 1, 'z'));
  }
}

}  // namespace
}  // namespace tally
