#pragma once

// A FileSystem wrapper that models what a crash does to unsynced data and
// injects disk faults, after leveldb's FaultInjectionTestEnv:
//   - DropUnsyncedData(): a power cut. Every file returns to the size it had
//     at its last successful Sync (or synced Write); files created since the
//     last SyncDir of their directory vanish.
//   - TearLastWrite(path, keep): a torn write. The file is cut to its synced
//     size plus `keep` bytes of whatever came after.
//   - FlipBit(path, offset, bit): silent corruption of stored bytes.
//   - FailNext(op, n, path_substring): the next n calls of `op` on matching
//     paths fail with IoError.
// Thread-safe. Segment files are append-only, so tracking the synced length
// is an exact model of what survives.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "tally/base/env.h"

namespace tally {

enum class FaultOp { kOpen, kRead, kWrite, kSync, kTruncate, kRemove, kRename, kSyncDir };

class FaultInjectionFileSystem final : public FileSystem {
 public:
  // `base` is not owned and must outlive this object. Typically a MemFileSystem.
  explicit FaultInjectionFileSystem(FileSystem* base);
  ~FaultInjectionFileSystem() override;

  Result<std::unique_ptr<File>> Open(const std::string& path, OpenOptions options) override;
  Status Remove(const std::string& path) override;
  Status Rename(const std::string& from, const std::string& to) override;
  Status CreateDirs(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& path) override;
  bool Exists(const std::string& path) override;
  Status SyncDir(const std::string& path) override;

  // Faults. Apply them while no File is being written.
  Status DropUnsyncedData();
  Status TearLastWrite(const std::string& path, uint64_t keep_bytes);
  Status FlipBit(const std::string& path, uint64_t offset, int bit);
  void FailNext(FaultOp op, int count, std::string path_substring = "");
  void ClearFailures();

  // Bytes of `path` known durable (for assertions in tests).
  uint64_t SyncedSize(const std::string& path);

  // Internal: called by wrapped files.
  Status MaybeFail(FaultOp op, const std::string& path);
  void RecordWrite(const std::string& path, uint64_t end_offset);
  void RecordSync(const std::string& path);
  // A truncate to `size`: nothing past it is written or durable any more.
  void RecordTruncate(const std::string& path, uint64_t size);

 private:
  struct FileState {
    uint64_t synced_size = 0;
    uint64_t written_size = 0;
  };
  struct Failure {
    FaultOp op;
    int remaining;
    std::string path_substring;
  };

  FileSystem* base_;
  std::mutex mu_;
  std::map<std::string, FileState> files_;  // GUARDED_BY(mu_)
  std::set<std::string> unsynced_new_;      // GUARDED_BY(mu_) created, dir not synced
  std::vector<Failure> failures_;           // GUARDED_BY(mu_)
};

}  // namespace tally
