#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "bench_util.h"

namespace tally::bench {
namespace {

std::string TestRoot() {
  return ::testing::TempDir() + "scratch_dir_test_" + std::to_string(getpid());
}

std::string TestDir(const std::string& name) { return TestRoot() + "/" + name; }

class ScratchDirTest : public ::testing::Test {
 protected:
  void TearDown() override { std::filesystem::remove_all(TestRoot()); }
};

TEST_F(ScratchDirTest, ASecondClaimOnTheSameDirectoryFailsNamingTheOwner) {
  const std::string dir = TestDir("one");
  ASSERT_EQ(ClaimScratchDir(dir), "");
  std::ifstream lock(dir + ".lock");
  std::string owner;
  lock >> owner;
  EXPECT_EQ(owner, std::to_string(getpid()));
  // A second open file description: flock locks conflict even within one
  // process, as they would between two benchmark processes.
  const std::string busy = ClaimScratchDir(dir);
  EXPECT_NE(busy.find(dir + " is in use by another benchmark (pid " + std::to_string(getpid())),
            std::string::npos)
      << busy;
  EXPECT_NE(busy.find("pass a different --dir"), std::string::npos) << busy;
  // Another directory is free.
  EXPECT_EQ(ClaimScratchDir(TestDir("two")), "");
}

TEST_F(ScratchDirTest, TheClaimEndsWithItsProcess) {
  const std::string dir = TestDir("child");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) _exit(ClaimScratchDir(dir).empty() ? 0 : 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(ClaimScratchDir(dir), "") << "the exited child's claim outlived it";
}

TEST_F(ScratchDirTest, ANormalExitRemovesTheLockFile) {
  const std::string dir = TestDir("exit");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0)
    std::exit(ClaimScratchDir(dir).empty() && std::filesystem::exists(dir + ".lock") ? 0 : 1);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0) << "the child could not claim " << dir;
  EXPECT_FALSE(std::filesystem::exists(dir + ".lock"));
}

TEST_F(ScratchDirTest, AnUncreatableLockFileIsReported) {
  const std::string busy = ClaimScratchDir("/proc/no-such-dir/scratch");
  EXPECT_NE(busy.find("cannot create /proc/no-such-dir/scratch.lock"), std::string::npos) << busy;
}

}  // namespace
}  // namespace tally::bench
