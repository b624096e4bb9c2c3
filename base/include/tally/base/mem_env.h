#pragma once

// In-memory implementations of the Env seams, for tests and simulation.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "tally/base/env.h"

namespace tally {

// A clock that only moves when told to. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_nanos = 1'000'000'000) : now_(start_nanos) {}
  int64_t NowNanos() override { return now_.load(); }
  int64_t WallNanos() override { return kWallOrigin + now_.load(); }
  void Advance(int64_t nanos) { now_ += nanos; }
  void Set(int64_t nanos) { now_ = nanos; }

 private:
  static constexpr int64_t kWallOrigin = 1'700'000'000'000'000'000;
  std::atomic<int64_t> now_;
};

// A seeded, deterministic generator (SplitMix64). Thread-safe.
class SeededRandom final : public Random {
 public:
  explicit SeededRandom(uint64_t seed) : state_(seed) {}
  uint64_t Next() override;

 private:
  std::mutex mu_;
  uint64_t state_;
};

// A file system held in memory. Sync is a no-op here; see
// FaultInjectionFileSystem for durability modelling. Thread-safe.
class MemFileSystem final : public FileSystem {
 public:
  MemFileSystem();
  ~MemFileSystem() override;

  Result<std::unique_ptr<File>> Open(const std::string& path, OpenOptions options) override;
  Status Remove(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status CreateDirs(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  bool Exists(const std::string& path) override;
  Status SyncDir(const std::string& path) override;

  struct Node;  // a file's shared contents

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Node>> files_;  // GUARDED_BY(mu_)
  std::map<std::string, bool> dirs_;                    // GUARDED_BY(mu_)
};

}  // namespace tally
