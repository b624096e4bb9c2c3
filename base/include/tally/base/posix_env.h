#pragma once

// The real Env: OS clocks, OS randomness and the POSIX file system. Reads
// use pread; writes go through one of two engines (WriteEngine).

#include <memory>
#include <string_view>

#include "tally/base/env.h"
#include "tally/base/result.h"

namespace tally {

// How PosixFileSystem's files carry out File::Write.
enum class WriteEngine {
  // pwritev, then fdatasync, on the calling thread. The default: a group
  // commit is one writer thread's write and sync, and on ext4 both are
  // blocking calls that io_uring hands to an io-wq worker, so the ring adds
  // two thread switches per commit (docs/log-format.md, "Write engine").
  kSync,
  // Every buffer as a write SQE linked (IOSQE_IO_LINK) to one
  // IORING_FSYNC_DATASYNC SQE, submitted and waited for with one call.
  kIoUring,
};

// "sync" / "io_uring".
std::string_view WriteEngineName(WriteEngine engine);
// Parses a WriteEngineName; InvalidArgument naming the choices otherwise.
Result<WriteEngine> ParseWriteEngine(std::string_view name);

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
  explicit PosixFileSystem(WriteEngine engine = WriteEngine::kSync) : engine_(engine) {}
  WriteEngine engine() const { return engine_; }

  Result<std::unique_ptr<File>> Open(const std::string& path, OpenOptions options) override;
  Status Remove(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status CreateDirs(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  bool Exists(const std::string& path) override;
  Status SyncDir(const std::string& path) override;

 private:
  const WriteEngine engine_;
};

}  // namespace tally
