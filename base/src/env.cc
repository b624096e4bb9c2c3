#include "tally/base/env.h"

#include "tally/base/posix_env.h"

namespace tally {

Env DefaultEnv() {
  // Function-static singletons: constructed on first use, never destroyed
  // before the last user (they live until exit).
  static SystemClock* clock = new SystemClock();
  static SystemRandom* random = new SystemRandom();
  static PosixFileSystem* fs = new PosixFileSystem();
  return Env{clock, random, fs};
}

std::string JoinPath(std::string_view dir, std::string_view name) {
  if (dir.empty()) return std::string(name);
  while (!name.empty() && name.front() == '/') name.remove_prefix(1);
  bool rooted = dir.front() == '/';
  while (!dir.empty() && dir.back() == '/') dir.remove_suffix(1);
  std::string out;
  out.reserve(dir.size() + 1 + name.size());
  if (dir.empty() && rooted) {
    out = "/";
  } else {
    out.assign(dir);
    out += '/';
  }
  out.append(name);
  return out;
}

}  // namespace tally
