#include "disk_probe.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tally::bench {

namespace {
constexpr size_t kBlock = 4096;
constexpr off_t kFileBytes = 16 << 20;

void Complain(const std::string& what, const std::string& path) {
  std::fprintf(stderr, "disk probe: %s %s: %s; the row runs without the probe\n", what.c_str(),
               path.c_str(), std::strerror(errno));
}
}  // namespace

DiskProbe::DiskProbe(std::string path, std::chrono::microseconds period) : path_(std::move(path)) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    Complain("open", path_);
    return;
  }
  // Zeroed and synced first: the probe's syncs then flush data only.
  const std::vector<char> zeros(1 << 20, '\0');
  for (off_t off = 0; off < kFileBytes; off += static_cast<off_t>(zeros.size())) {
    if (::pwrite(fd_, zeros.data(), zeros.size(), off) != static_cast<ssize_t>(zeros.size())) {
      Complain("zeroing", path_);
      ::close(fd_);
      fd_ = -1;
      return;
    }
  }
  if (::fsync(fd_) != 0) {
    Complain("fsync", path_);
    ::close(fd_);
    fd_ = -1;
    return;
  }
  start_ = BenchClock::now();
  thread_ = std::thread([this, period] { Run(period); });
}

DiskProbe::~DiskProbe() {
  Stop();
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
}

void DiskProbe::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void DiskProbe::Run(std::chrono::microseconds period) {
  const std::vector<char> block(kBlock, 'p');
  off_t off = 0;
  auto next = start_;
  while (!stop_.load(std::memory_order_relaxed)) {
    const auto t0 = BenchClock::now();
    if (::pwrite(fd_, block.data(), block.size(), off) != static_cast<ssize_t>(block.size()) ||
        ::fdatasync(fd_) != 0) {
      Complain("write and fdatasync", path_);
      return;
    }
    const double us = MicrosSince(t0);
    latencies_.Record(us);
    max_us_ = std::max(max_us_, us);
    if (us >= kStallUs) {
      stalls_.push_back({std::chrono::duration<double, std::micro>(t0 - start_).count(), us});
    }
    off = (off + static_cast<off_t>(kBlock)) % kFileBytes;
    // Fixed ticks: a stall is not followed by a burst of catch-up syncs.
    next += period;
    const auto now = BenchClock::now();
    if (next < now) next = now;
    std::this_thread::sleep_until(next);
  }
}

bool DiskProbe::OverlapsAny(const std::vector<Stall>& stalls, double from_us, double to_us) {
  for (const Stall& s : stalls) {
    if (s.start_us > to_us) break;
    if (s.start_us + s.took_us >= from_us) return true;
  }
  return false;
}

void DiskProbe::AddTo(BenchResult& r) {
  if (!ok()) return;
  double stalled_us = 0;
  for (const Stall& s : stalls_) stalled_us += s.took_us;
  r.extra["disk_probe_syncs"] = static_cast<double>(latencies_.total());
  r.extra["disk_probe_p50_us"] = latencies_.Quantile(0.50);
  r.extra["disk_probe_p99_us"] = latencies_.Quantile(0.99);
  r.extra["disk_probe_max_us"] = max_us_;
  r.extra["disk_probe_stalls"] = static_cast<double>(stalls_.size());
  r.extra["disk_probe_stalled_ms"] = stalled_us / 1000;
}

}  // namespace tally::bench
