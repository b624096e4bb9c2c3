#pragma once

// Who holds a POSIX record lock (fcntl F_SETLK), such as the LOCK file
// RocksDB keeps locked for as long as a database is open. The kernel drops
// such a lock only when its process closes the file -- for a process killed
// with SIGKILL, once the last of its threads has exited -- so a held lock
// says, whatever the holder's pid or command line, that a data directory is
// still in use.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace tally {

struct HeldLock {
  std::string path;  // the locked file
  int64_t pid = 0;   // the process holding the lock
};

// The first file named `name` in `dir`, or in a directory at most
// `max_depth` levels below it (dir/a/b/LOCK is level 2), on which another
// process holds a lock; nullopt if none (or `dir` does not exist). Only
// queries (F_GETLK), never locks. Do not call it from a process that itself
// holds locks on those files: closing the descriptor it queries through
// would release them (POSIX lock semantics).
std::optional<HeldLock> FindHeldLock(const std::string& dir, std::string_view name = "LOCK",
                                     int max_depth = 3);

}  // namespace tally
