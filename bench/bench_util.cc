#include "bench_util.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

namespace tally::bench {

BenchResult MakeResult(std::string name, uint64_t ops, uint64_t bytes_per_op, double seconds,
                       LatencyRecorder& latencies) {
  BenchResult r;
  r.name = std::move(name);
  r.ops_per_sec = seconds > 0 ? static_cast<double>(ops) / seconds : 0;
  r.mb_per_sec = r.ops_per_sec * static_cast<double>(bytes_per_op) / 1e6;
  r.p50_us = latencies.Quantile(0.50);
  r.p99_us = latencies.Quantile(0.99);
  return r;
}

void PrintResults(const std::vector<BenchResult>& results, bool json) {
  if (json) {
    std::printf("[\n");
    for (size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      std::printf(
          "  {\"name\": \"%s\", \"ops_per_sec\": %.0f, \"mb_per_sec\": %.2f, \"p50_us\": %.1f, "
          "\"p99_us\": %.1f",
          r.name.c_str(), r.ops_per_sec, r.mb_per_sec, r.p50_us, r.p99_us);
      for (const auto& [k, v] : r.extra) std::printf(", \"%s\": %.4g", k.c_str(), v);
      std::printf("}%s\n", i + 1 < results.size() ? "," : "");
    }
    std::printf("]\n");
    return;
  }
  std::printf("%-22s %14s %10s %10s %10s  %s\n", "name", "ops/s", "MB/s", "p50_us", "p99_us",
              "notes");
  for (const auto& r : results) {
    std::printf("%-22s %14.0f %10.2f %10.1f %10.1f ", r.name.c_str(), r.ops_per_sec, r.mb_per_sec,
                r.p50_us, r.p99_us);
    for (const auto& [k, v] : r.extra) std::printf(" %s=%.4g", k.c_str(), v);
    std::printf("\n");
  }
}

namespace {
// A held claim: removes its lock file at normal exit (return from main or
// std::exit), while still holding the lock; a crash leaves the file, whose
// lock the kernel has released, for the next claim to take over.
struct HeldClaim {
  int fd = -1;
  std::string path;
  HeldClaim() = default;
  HeldClaim(const HeldClaim&) = delete;
  HeldClaim& operator=(const HeldClaim&) = delete;
  ~HeldClaim() {
    ::unlink(path.c_str());
    ::close(fd);
  }
};
std::vector<std::unique_ptr<HeldClaim>>& HeldClaims() {
  static std::vector<std::unique_ptr<HeldClaim>> claims;
  return claims;
}
}  // namespace

std::string ClaimScratchDir(const std::string& dir) {
  const std::string path = dir + ".lock";
  std::error_code ec;
  const auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return "cannot create " + path + ": " + std::strerror(errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      char owner[32] = {0};
      const ssize_t n = ::pread(fd, owner, sizeof(owner) - 1, 0);
      ::close(fd);
      if (err != EWOULDBLOCK) return "cannot lock " + path + ": " + std::strerror(err);
      return dir + " is in use by another benchmark (pid " +
             (n > 0 ? std::string(owner, static_cast<size_t>(n)) : std::string("unknown")) +
             "); wait for it to finish or pass a different --dir";
    }
    // Locked; but if the owner before us removed the file between our open
    // and our lock, the lock is on a file nobody else will find: start over.
    struct stat held = {};
    struct stat named = {};
    if (::fstat(fd, &held) != 0 || ::stat(path.c_str(), &named) != 0 ||
        held.st_ino != named.st_ino || held.st_dev != named.st_dev) {
      ::close(fd);
      continue;
    }
    const std::string pid = std::to_string(::getpid());
    if (::ftruncate(fd, 0) != 0 ||
        ::pwrite(fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
      // The lock holds either way; only the owner's name in messages is lost.
    }
    auto held_claim = std::make_unique<HeldClaim>();  // no temporary: its destructor unlinks
    held_claim->fd = fd;
    held_claim->path = path;
    HeldClaims().push_back(std::move(held_claim));
    return "";
  }
  return "cannot lock " + path + ": it was removed and recreated 10 times in a row";
}

}  // namespace tally::bench
