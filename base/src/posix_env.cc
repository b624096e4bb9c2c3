#include "tally/base/posix_env.h"

#include <dirent.h>
#include <fcntl.h>
#include <liburing.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <climits>
#include <mutex>
#include <random>

namespace tally {

// ---------------------------------------------------------------- clocks --

int64_t SystemClock::NowNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

int64_t SystemClock::WallNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct SystemRandom::State {
  std::mutex mu;
  std::mt19937_64 gen;  // GUARDED_BY(mu)
};

SystemRandom::SystemRandom() : state_(std::make_shared<State>()) {
  std::random_device rd;
  std::seed_seq seq{rd(), rd(), rd(), rd()};
  state_->gen.seed(seq);
}

uint64_t SystemRandom::Next() {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->gen();
}

// ----------------------------------------------------------------- files --

namespace {

// "open /x/seg-1: No such file or directory"; ENOENT maps to NotFound.
Status PathError(std::string_view what, const std::string& path, int err) {
  std::string m(what);
  m += ' ';
  m += path;
  Status s = ErrnoStatus(m, err);
  if (err == ENOENT) return NotFound(s.message());
  return s;
}

// Ring depth: one Write needs ceil(buffers / IOV_MAX) write SQEs plus the
// fsync; larger Writes are submitted in several chained rounds.
constexpr unsigned kRingEntries = 64;
constexpr size_t kMaxWriteSqes = kRingEntries - 1;  // leave room for the fsync
constexpr uint64_t kSyncTag = kRingEntries;         // user_data of the fsync SQE

class PosixFile final : public File {
 public:
  PosixFile(std::string path, int fd, WriteEngine engine)
      : path_(std::move(path)), fd_(fd), engine_(engine) {}

  ~PosixFile() override {
    if (ring_ready_) io_uring_queue_exit(&ring_);
    close(fd_);
  }

  Result<size_t> Read(uint64_t offset, std::span<char> out) override {
    size_t done = 0;
    while (done < out.size()) {
      ssize_t n = pread(fd_, out.data() + done, out.size() - done, offset + done);
      if (n < 0) {
        if (errno == EINTR) continue;
        return PathError("pread", path_, errno);
      }
      if (n == 0) break;  // end of file
      done += static_cast<size_t>(n);
    }
    return done;
  }

  Status Write(uint64_t offset, std::span<const ConstBuffer> bufs, bool sync) override;

  Status Sync() override {
    while (fdatasync(fd_) != 0) {
      if (errno != EINTR) return PathError("fdatasync", path_, errno);
    }
    return Status::OK();
  }

  Result<uint64_t> Size() override {
    struct stat st;
    if (fstat(fd_, &st) != 0) return PathError("fstat", path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  Status Truncate(uint64_t size) override {
    while (ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      if (errno != EINTR) return PathError("ftruncate", path_, errno);
    }
    return Status::OK();
  }

  const std::string& path() const override { return path_; }

 private:
  // Write's engines: iovs_ holds the buffers, starting at file `offset`.
  Status WriteSync(uint64_t offset, bool sync);  // REQUIRES(write_mu_)
  Status WriteRing(uint64_t offset, bool sync);  // REQUIRES(write_mu_)
  Status EnsureRing();                           // REQUIRES(write_mu_)
  void ResetRing();                              // REQUIRES(write_mu_)
  // Consumes `n` written bytes from the front of iovs_[next_..].
  void Advance(uint64_t n);  // REQUIRES(write_mu_)

  const std::string path_;
  const int fd_;
  const WriteEngine engine_;

  std::mutex write_mu_;      // serializes writers of this file
  bool ring_ready_ = false;  // GUARDED_BY(write_mu_)
  struct io_uring ring_;     // GUARDED_BY(write_mu_)
  // Reused across calls so the hot path does not allocate.
  std::vector<iovec> iovs_;                          // GUARDED_BY(write_mu_)
  size_t next_ = 0;                                  // GUARDED_BY(write_mu_) first unwritten iovec
  std::array<uint64_t, kMaxWriteSqes> sqe_bytes_{};  // GUARDED_BY(write_mu_)
  std::array<int, kMaxWriteSqes> sqe_res_{};         // GUARDED_BY(write_mu_)
};

Status PosixFile::EnsureRing() {
  if (ring_ready_) return Status::OK();
  int ret = io_uring_queue_init(kRingEntries, &ring_, 0);
  if (ret < 0) return PathError("io_uring_queue_init for", path_, -ret);
  ring_ready_ = true;
  return Status::OK();
}

void PosixFile::ResetRing() {
  if (!ring_ready_) return;
  io_uring_queue_exit(&ring_);
  ring_ready_ = false;
}

void PosixFile::Advance(uint64_t n) {
  while (n > 0 && next_ < iovs_.size()) {
    iovec& v = iovs_[next_];
    if (n >= v.iov_len) {
      n -= v.iov_len;
      ++next_;
    } else {
      v.iov_base = static_cast<char*>(v.iov_base) + n;
      v.iov_len -= n;
      n = 0;
    }
  }
}

Status PosixFile::Write(uint64_t offset, std::span<const ConstBuffer> bufs, bool sync) {
  std::lock_guard<std::mutex> lock(write_mu_);
  iovs_.clear();
  for (const ConstBuffer& b : bufs) {
    if (!b.empty()) iovs_.push_back(iovec{const_cast<char*>(b.data()), b.size()});
  }
  next_ = 0;
  if (iovs_.empty()) return sync ? Sync() : Status::OK();
  return engine_ == WriteEngine::kSync ? WriteSync(offset, sync) : WriteRing(offset, sync);
}

Status PosixFile::WriteSync(uint64_t offset, bool sync) {
  uint64_t pos = offset;  // file offset of iovs_[next_]
  while (next_ < iovs_.size()) {
    const int n = static_cast<int>(std::min<size_t>(IOV_MAX, iovs_.size() - next_));
    const ssize_t done = pwritev(fd_, &iovs_[next_], n, static_cast<off_t>(pos));
    if (done < 0) {
      if (errno == EINTR) continue;
      return PathError("write", path_, errno);
    }
    if (done == 0) {
      return IoError("write " + path_ + ": no progress at offset " + std::to_string(pos));
    }
    Advance(static_cast<uint64_t>(done));  // a short write resumes where it stopped
    pos += static_cast<uint64_t>(done);
  }
  return sync ? Sync() : Status::OK();
}

Status PosixFile::WriteRing(uint64_t offset, bool sync) {
  TALLY_RETURN_IF_ERROR(EnsureRing());

  uint64_t pos = offset;  // file offset of iovs_[next_]
  bool synced = !sync;
  // Each round submits one linked chain: writes of the remaining buffers (up
  // to kMaxWriteSqes SQEs of IOV_MAX iovecs) and, if they reach the end, the
  // fsync. A short write breaks the chain; the next round resumes after it.
  while (next_ < iovs_.size() || !synced) {
    size_t nwrites = 0;
    size_t i = next_;
    uint64_t at = pos;
    io_uring_sqe* sqe = nullptr;
    while (i < iovs_.size() && nwrites < kMaxWriteSqes) {
      size_t n = std::min<size_t>(IOV_MAX, iovs_.size() - i);
      uint64_t bytes = 0;
      for (size_t k = i; k < i + n; ++k) bytes += iovs_[k].iov_len;
      sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_writev(sqe, fd_, &iovs_[i], static_cast<unsigned>(n), at);
      io_uring_sqe_set_flags(sqe, IOSQE_IO_LINK);
      io_uring_sqe_set_data64(sqe, nwrites);
      sqe_bytes_[nwrites] = bytes;
      sqe_res_[nwrites] = -ECANCELED;
      ++nwrites;
      i += n;
      at += bytes;
    }
    const bool with_sync = sync && i == iovs_.size();
    int sync_res = -ECANCELED;
    if (with_sync) {
      sqe = io_uring_get_sqe(&ring_);
      io_uring_prep_fsync(sqe, fd_, IORING_FSYNC_DATASYNC);
      io_uring_sqe_set_data64(sqe, kSyncTag);
    } else if (sqe != nullptr) {
      io_uring_sqe_set_flags(sqe, 0);  // the last write ends the chain
    }
    const size_t count = nwrites + (with_sync ? 1 : 0);

    size_t submitted = 0;
    Status ring_error;
    while (submitted < count) {
      // One syscall submits the chain and waits for all of its completions.
      int ret = io_uring_submit_and_wait(&ring_, static_cast<unsigned>(count));
      if (ret == -EINTR || ret == -EAGAIN) continue;
      if (ret <= 0) {
        ring_error = PathError("io_uring_submit for", path_, ret < 0 ? -ret : EIO);
        break;
      }
      submitted += static_cast<size_t>(ret);
    }
    for (size_t got = 0; got < submitted;) {
      io_uring_cqe* cqe = nullptr;
      int ret = io_uring_wait_cqe(&ring_, &cqe);
      if (ret == -EINTR) continue;
      if (ret < 0) {
        ring_error = PathError("io_uring_wait_cqe for", path_, -ret);
        break;
      }
      uint64_t tag = io_uring_cqe_get_data64(cqe);
      if (tag == kSyncTag) {
        sync_res = cqe->res;
      } else if (tag < nwrites) {
        sqe_res_[tag] = cqe->res;
      }
      io_uring_cqe_seen(&ring_, cqe);
      ++got;
    }
    if (!ring_error.ok()) {
      // The ring may hold unsubmitted SQEs or unreaped CQEs: start afresh.
      ResetRing();
      return ring_error;
    }

    // Results in chain order. The first real error wins; -ECANCELED only
    // says that an earlier link failed or was short.
    bool short_write = false;
    for (size_t k = 0; k < nwrites; ++k) {
      int res = sqe_res_[k];
      if (res == -ECANCELED) continue;
      if (res < 0) return PathError("write", path_, -res);
      if (short_write) continue;  // should not happen: the chain is broken
      Advance(static_cast<uint64_t>(res));
      pos += static_cast<uint64_t>(res);
      if (static_cast<uint64_t>(res) < sqe_bytes_[k]) {
        if (res == 0) {
          return IoError("write " + path_ + ": no progress at offset " + std::to_string(pos));
        }
        short_write = true;
      }
    }
    if (with_sync) {
      if (sync_res == 0) {
        synced = true;
      } else if (sync_res != -ECANCELED) {
        return PathError("fdatasync", path_, -sync_res);
      } else if (!short_write) {
        return IoError("write " + path_ + ": io_uring chain cancelled without an error");
      }
    }
    if (!short_write && next_ != i) {
      return IoError("write " + path_ + ": io_uring chain cancelled without an error");
    }
  }
  return Status::OK();
}

}  // namespace

// ----------------------------------------------------------- file system --

std::string_view WriteEngineName(WriteEngine engine) {
  return engine == WriteEngine::kIoUring ? "io_uring" : "sync";
}

Result<WriteEngine> ParseWriteEngine(std::string_view name) {
  for (WriteEngine e : {WriteEngine::kSync, WriteEngine::kIoUring}) {
    if (name == WriteEngineName(e)) return e;
  }
  return InvalidArgument("unknown write engine '" + std::string(name) +
                         "'; choose sync (pwritev + fdatasync) or io_uring");
}

Result<std::unique_ptr<File>> PosixFileSystem::Open(const std::string& path, OpenOptions options) {
  int flags = O_CLOEXEC | (options.read_only ? O_RDONLY : O_RDWR);
  if (options.create) flags |= O_CREAT;
  if (options.create && options.exclusive) flags |= O_EXCL;
  int fd;
  do {
    fd = open(path.c_str(), flags, 0644);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return PathError("open", path, errno);
  return std::unique_ptr<File>(std::make_unique<PosixFile>(path, fd, engine_));
}

Status PosixFileSystem::Remove(const std::string& path) {
  if (unlink(path.c_str()) == 0) return Status::OK();
  int err = errno;
  if (err == EISDIR || err == EPERM) {
    if (rmdir(path.c_str()) == 0) return Status::OK();
    err = errno;
  }
  return PathError("remove", path, err);
}

Status PosixFileSystem::Rename(const std::string& from, const std::string& to) {
  if (rename(from.c_str(), to.c_str()) == 0) return Status::OK();
  return PathError("rename " + from + " ->", to, errno);
}

Status PosixFileSystem::CreateDirs(const std::string& path) {
  std::string prefix;
  prefix.reserve(path.size());
  size_t pos = 0;
  while (pos < path.size()) {
    size_t next = path.find('/', pos + 1);
    if (next == std::string::npos) next = path.size();
    prefix.assign(path, 0, next);
    pos = next;
    if (prefix.empty() || prefix.back() == '/') continue;  // "/" or "a//b"
    if (mkdir(prefix.c_str(), 0755) == 0) continue;
    int err = errno;
    struct stat st;
    if (err == EEXIST && stat(prefix.c_str(), &st) == 0) {
      if (S_ISDIR(st.st_mode)) continue;
      err = ENOTDIR;
    }
    return PathError("mkdir", prefix, err);
  }
  return Status::OK();
}

Result<std::vector<std::string>> PosixFileSystem::ListDir(const std::string& path) {
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return PathError("opendir", path, errno);
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = readdir(dir)) {
    std::string_view name(e->d_name);
    if (name != "." && name != "..") names.emplace_back(name);
  }
  int err = errno;
  closedir(dir);
  if (err != 0) return PathError("readdir", path, err);
  return names;
}

bool PosixFileSystem::Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

Status PosixFileSystem::SyncDir(const std::string& path) {
  int fd = open(path.c_str(), O_DIRECTORY | O_RDONLY | O_CLOEXEC);
  if (fd < 0) return PathError("open", path, errno);
  Status s;
  if (fsync(fd) != 0) s = PathError("fsync", path, errno);
  close(fd);
  return s;
}

}  // namespace tally
