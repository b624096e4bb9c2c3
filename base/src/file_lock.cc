#include "tally/base/file_lock.h"

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace tally {

namespace {

// The pid holding a lock on `path` that would conflict with a write lock on
// the whole file, or 0.
int64_t LockHolder(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct flock f {};
  f.l_type = F_WRLCK;
  f.l_whence = SEEK_SET;
  f.l_start = 0;
  f.l_len = 0;
  int64_t pid = 0;
  if (fcntl(fd, F_GETLK, &f) == 0 && f.l_type != F_UNLCK) pid = f.l_pid;
  ::close(fd);
  return pid;
}

}  // namespace

std::optional<HeldLock> FindHeldLock(const std::string& dir, std::string_view name, int max_depth) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const fs::directory_entry& e = *it;
    std::error_code type_ec;
    if (e.is_directory(type_ec)) {
      if (it.depth() >= max_depth) it.disable_recursion_pending();
      continue;
    }
    if (e.path().filename() != name) continue;
    if (int64_t pid = LockHolder(e.path().string()); pid != 0) {
      return HeldLock{e.path().string(), pid};
    }
  }
  return std::nullopt;
}

}  // namespace tally
