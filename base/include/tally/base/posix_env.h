#pragma once

// The real Env: OS clocks, OS randomness and the POSIX file system. Writes
// go through io_uring: a File::Write with sync=true submits every buffer as
// a write SQE linked (IOSQE_IO_LINK) to one IORING_FSYNC_DATASYNC SQE, and
// waits for the chain. Reads use pread.

#include <memory>

#include "tally/base/env.h"

namespace tally {

class SystemClock final : public Clock {
 public:
  int64_t NowNanos() override;
  int64_t WallNanos() override;
};

// Seeded from std::random_device. Thread-safe.
class SystemRandom final : public Random {
 public:
  SystemRandom();
  uint64_t Next() override;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

class PosixFileSystem final : public FileSystem {
 public:
  Result<std::unique_ptr<File>> Open(const std::string& path, OpenOptions options) override;
  Status Remove(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status CreateDirs(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  bool Exists(const std::string& path) override;
  Status SyncDir(const std::string& path) override;
};

}  // namespace tally
