// FindHeldLock: finds a file another process holds an fcntl lock on (as
// RocksDB does with its LOCK), and stops reporting it once that process has
// exited.

#include "tally/base/file_lock.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace tally {
namespace {

class FileLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tally-file-lock-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    std::filesystem::create_directories(dir_ + "/log/metadata");
    std::ofstream(dir_ + "/log/metadata/LOCK");
  }
  void TearDown() override {
    if (child_ > 0) {
      kill(child_, SIGKILL);
      waitpid(child_, nullptr, 0);
    }
    std::filesystem::remove_all(dir_);
  }

  // Forks a child that locks `path` (as RocksDB's LockFile does) and waits
  // until it holds the lock.
  void LockInChild(const std::string& path) {
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    child_ = fork();
    ASSERT_GE(child_, 0);
    if (child_ == 0) {
      int fd = ::open(path.c_str(), O_RDWR);
      struct flock f {};
      f.l_type = F_WRLCK;
      f.l_whence = SEEK_SET;
      bool ok = fd >= 0 && fcntl(fd, F_SETLK, &f) == 0;
      char c = ok ? 1 : 0;
      (void)!write(ready[1], &c, 1);
      pause();
      _exit(0);
    }
    close(ready[1]);
    char c = 0;
    ASSERT_EQ(read(ready[0], &c, 1), 1);
    close(ready[0]);
    ASSERT_EQ(c, 1) << "the child could not lock " << path;
  }

  std::string dir_;
  pid_t child_ = -1;
};

TEST_F(FileLockTest, ReportsNothingWhenNoLockIsHeld) {
  EXPECT_FALSE(FindHeldLock(dir_).has_value());
  EXPECT_FALSE(FindHeldLock(dir_ + "/missing").has_value());
}

TEST_F(FileLockTest, FindsTheHolderBelowTheDirectoryUntilItExits) {
  ASSERT_NO_FATAL_FAILURE(LockInChild(dir_ + "/log/metadata/LOCK"));
  auto held = FindHeldLock(dir_);
  ASSERT_TRUE(held.has_value());
  EXPECT_EQ(held->pid, child_);
  EXPECT_EQ(held->path, dir_ + "/log/metadata/LOCK");

  // Only files with the given name, only down to max_depth.
  EXPECT_FALSE(FindHeldLock(dir_, "OTHER").has_value());
  EXPECT_FALSE(FindHeldLock(dir_, "LOCK", 1).has_value());
  EXPECT_TRUE(FindHeldLock(dir_, "LOCK", 2).has_value());

  kill(child_, SIGKILL);
  ASSERT_EQ(waitpid(child_, nullptr, 0), child_);
  child_ = -1;
  EXPECT_FALSE(FindHeldLock(dir_).has_value());
}

}  // namespace
}  // namespace tally
