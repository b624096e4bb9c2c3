#pragma once

// The Env seams: every clock read, random number and file operation in Tally
// goes through these interfaces, so that a whole cluster can run in one
// process on virtual time, in memory, with injected faults (see
// fault_env.h), while production uses the real implementations (posix_env.h).

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tally/base/result.h"
#include "tally/base/status.h"

namespace tally {

// Time. Monotonic time orders events and drives timeouts; wall time only
// stamps entries for humans.
class Clock {
 public:
  virtual ~Clock() = default;
  // Monotonic nanoseconds since an arbitrary origin. Thread-safe.
  virtual int64_t NowNanos() = 0;
  // Nanoseconds since the Unix epoch. Thread-safe.
  virtual int64_t WallNanos() = 0;
};

// Randomness. Thread-safe.
class Random {
 public:
  virtual ~Random() = default;
  virtual uint64_t Next() = 0;
  // Uniform in [0, n); n > 0.
  uint64_t Uniform(uint64_t n) { return Next() % n; }
};

// One contiguous piece of bytes to write.
using ConstBuffer = std::span<const char>;

// A file opened for positional reads and writes. Segment files are written
// append-only by one writer thread and read concurrently by many.
class File {
 public:
  virtual ~File() = default;

  // Reads up to out.size() bytes at `offset`. Returns the bytes read; fewer
  // than requested only at end of file. Thread-safe (pread semantics).
  virtual Result<size_t> Read(uint64_t offset, std::span<char> out) = 0;

  // Writes `bufs` back to back starting at `offset`, then, if `sync` is
  // true, makes them durable (fdatasync) before returning: one call is one
  // group commit (PosixFileSystem: pwritev + fdatasync, or one linked
  // io_uring chain, by its WriteEngine). On error, an unknown prefix may
  // have been written.
  // Not thread-safe against other writers of the same file.
  virtual Status Write(uint64_t offset, std::span<const ConstBuffer> bufs, bool sync) = 0;

  // Makes all completed writes durable (fdatasync).
  virtual Status Sync() = 0;

  // Current size in bytes.
  virtual Result<uint64_t> Size() = 0;

  // Cuts the file to `size` bytes (used to drop a torn tail).
  virtual Status Truncate(uint64_t size) = 0;

  // Path this file was opened with.
  virtual const std::string& path() const = 0;
};

struct OpenOptions {
  bool create = false;     // create if missing
  bool exclusive = false;  // with create: fail with IoError if it exists
  bool read_only = false;
};

// Files and directories. All methods are thread-safe.
class FileSystem {
 public:
  virtual ~FileSystem() = default;

  virtual Result<std::unique_ptr<File>> Open(const std::string& path, OpenOptions options) = 0;
  // Returns NotFound if the path does not exist.
  virtual Status Remove(const std::string& path) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // Creates the directory and any missing parents; OK if it exists.
  virtual Status CreateDirs(const std::string& path) = 0;
  // Names (not paths) of the entries of a directory, unsorted.
  virtual Result<std::vector<std::string>> ListDir(const std::string& path) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // Makes the directory's entries (creations, removals, renames) durable.
  virtual Status SyncDir(const std::string& path) = 0;
};

// The seams bundled. Not owning: the Env outlives everything that uses it.
struct Env {
  Clock* clock = nullptr;
  Random* random = nullptr;
  FileSystem* fs = nullptr;
};

// The process-wide real Env: steady/system clocks, a random device seeded
// generator, and the POSIX file system with io_uring writes.
Env DefaultEnv();

// Joins two path parts with exactly one '/'.
std::string JoinPath(std::string_view dir, std::string_view name);

}  // namespace tally
