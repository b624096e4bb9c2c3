#include "tally/base/fault_env.h"

#include <utility>
#include <vector>

namespace tally {
namespace {

std::string_view OpName(FaultOp op) {
  switch (op) {
    case FaultOp::kOpen:
      return "open";
    case FaultOp::kRead:
      return "read";
    case FaultOp::kWrite:
      return "write";
    case FaultOp::kSync:
      return "sync";
    case FaultOp::kTruncate:
      return "truncate";
    case FaultOp::kRemove:
      return "remove";
    case FaultOp::kRename:
      return "rename";
    case FaultOp::kSyncDir:
      return "syncdir";
  }
  return "unknown";
}

// Drops a trailing '/' so that "dir/" and "dir" name the same directory.
std::string TrimSlash(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return "/";
  return TrimSlash(path.substr(0, slash));
}

// A File that asks the file system for injected faults and reports writes
// and syncs so that the file system knows what a power cut would keep.
class FaultFile final : public File {
 public:
  FaultFile(FaultInjectionFileSystem* fs, std::unique_ptr<File> base, std::string key)
      : fs_(fs), base_(std::move(base)), key_(std::move(key)) {}

  Result<size_t> Read(uint64_t offset, std::span<char> out) override {
    TALLY_RETURN_IF_ERROR(fs_->MaybeFail(FaultOp::kRead, path()));
    return base_->Read(offset, out);
  }

  Status Write(uint64_t offset, std::span<const ConstBuffer> bufs, bool sync) override {
    TALLY_RETURN_IF_ERROR(fs_->MaybeFail(FaultOp::kWrite, path()));
    uint64_t end = offset;
    for (const ConstBuffer& b : bufs) end += b.size();
    // The data goes down unsynced first, so that an injected sync failure
    // leaves it written but not durable, as a failed fdatasync does.
    Status s = base_->Write(offset, bufs, /*sync=*/false);
    // Even a failed write may have stored a prefix; count it as unsynced.
    fs_->RecordWrite(key_, end);
    if (!s.ok() || !sync) return s;
    TALLY_RETURN_IF_ERROR(fs_->MaybeFail(FaultOp::kSync, path()));
    TALLY_RETURN_IF_ERROR(base_->Sync());
    fs_->RecordSync(key_);
    return Status::OK();
  }

  Status Sync() override {
    TALLY_RETURN_IF_ERROR(fs_->MaybeFail(FaultOp::kSync, path()));
    TALLY_RETURN_IF_ERROR(base_->Sync());
    fs_->RecordSync(key_);
    return Status::OK();
  }

  Result<uint64_t> Size() override { return base_->Size(); }

  Status Truncate(uint64_t size) override {
    TALLY_RETURN_IF_ERROR(fs_->MaybeFail(FaultOp::kTruncate, path()));
    TALLY_RETURN_IF_ERROR(base_->Truncate(size));
    fs_->RecordTruncate(key_, size);
    return Status::OK();
  }

  const std::string& path() const override { return base_->path(); }

 private:
  FaultInjectionFileSystem* const fs_;
  const std::unique_ptr<File> base_;
  const std::string key_;  // path as tracked by fs_
};

}  // namespace

FaultInjectionFileSystem::FaultInjectionFileSystem(FileSystem* base) : base_(base) {}
FaultInjectionFileSystem::~FaultInjectionFileSystem() = default;

Status FaultInjectionFileSystem::MaybeFail(FaultOp op, const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = failures_.begin(); it != failures_.end(); ++it) {
    if (it->op != op || path.find(it->path_substring) == std::string::npos) continue;
    if (--it->remaining <= 0) failures_.erase(it);
    std::string m = "injected fault: ";
    m += OpName(op);
    m += ' ';
    m += path;
    return IoError(std::move(m));
  }
  return Status::OK();
}

void FaultInjectionFileSystem::RecordWrite(const std::string& path, uint64_t end_offset) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& st = files_[TrimSlash(path)];
  st.written_size = std::max(st.written_size, end_offset);
}

void FaultInjectionFileSystem::RecordSync(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& st = files_[TrimSlash(path)];
  st.synced_size = std::max(st.synced_size, st.written_size);
}

void FaultInjectionFileSystem::RecordTruncate(const std::string& path, uint64_t size) {
  std::lock_guard<std::mutex> lock(mu_);
  FileState& st = files_[TrimSlash(path)];
  st.written_size = size;
  st.synced_size = std::min(st.synced_size, size);
}

Result<std::unique_ptr<File>> FaultInjectionFileSystem::Open(const std::string& path,
                                                             OpenOptions options) {
  TALLY_RETURN_IF_ERROR(MaybeFail(FaultOp::kOpen, path));
  std::string key = TrimSlash(path);
  // Exists-then-open is not atomic, but creations that race on one path are
  // outside what this model needs (one writer per segment file).
  bool existed = base_->Exists(path);
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<File> file, base_->Open(path, options));
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (files_.count(key) == 0) {
      FileState st;
      if (existed) {
        // Present before we saw it: assume it is durable as it stands.
        Result<uint64_t> size = file->Size();
        if (size.ok()) st.synced_size = st.written_size = *size;
      } else {
        unsynced_new_.insert(key);
      }
      files_[key] = st;
    }
  }
  return std::unique_ptr<File>(std::make_unique<FaultFile>(this, std::move(file), key));
}

Status FaultInjectionFileSystem::Remove(const std::string& path) {
  TALLY_RETURN_IF_ERROR(MaybeFail(FaultOp::kRemove, path));
  TALLY_RETURN_IF_ERROR(base_->Remove(path));
  std::lock_guard<std::mutex> lock(mu_);
  std::string key = TrimSlash(path);
  files_.erase(key);
  unsynced_new_.erase(key);
  return Status::OK();
}

Status FaultInjectionFileSystem::Rename(const std::string& from, const std::string& to) {
  TALLY_RETURN_IF_ERROR(MaybeFail(FaultOp::kRename, from));
  TALLY_RETURN_IF_ERROR(base_->Rename(from, to));
  std::lock_guard<std::mutex> lock(mu_);
  std::string f = TrimSlash(from);
  std::string t = TrimSlash(to);
  // Renames are modelled as durable at once, except that a file whose
  // creation was not yet made durable stays undurable under its new name.
  files_.erase(t);
  unsynced_new_.erase(t);
  auto it = files_.find(f);
  if (it != files_.end()) {
    files_[t] = it->second;
    files_.erase(f);
  }
  if (unsynced_new_.erase(f) != 0) unsynced_new_.insert(t);
  return Status::OK();
}

Status FaultInjectionFileSystem::CreateDirs(const std::string& path) {
  return base_->CreateDirs(path);
}

Result<std::vector<std::string>> FaultInjectionFileSystem::ListDir(const std::string& path) {
  return base_->ListDir(path);
}

bool FaultInjectionFileSystem::Exists(const std::string& path) { return base_->Exists(path); }

Status FaultInjectionFileSystem::SyncDir(const std::string& path) {
  TALLY_RETURN_IF_ERROR(MaybeFail(FaultOp::kSyncDir, path));
  TALLY_RETURN_IF_ERROR(base_->SyncDir(path));
  std::string dir = TrimSlash(path);
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = unsynced_new_.begin(); it != unsynced_new_.end();) {
    it = Parent(*it) == dir ? unsynced_new_.erase(it) : std::next(it);
  }
  return Status::OK();
}

Status FaultInjectionFileSystem::DropUnsyncedData() {
  std::lock_guard<std::mutex> lock(mu_);
  for (const std::string& path : unsynced_new_) {
    Status s = base_->Remove(path);
    if (!s.ok() && s.code() != Code::kNotFound) return s.WithContext("power cut");
    files_.erase(path);
  }
  unsynced_new_.clear();
  for (auto& [path, st] : files_) {
    if (!base_->Exists(path)) continue;
    auto file = base_->Open(path, OpenOptions{});
    if (!file.ok()) return file.status().WithContext("power cut");
    TALLY_ASSIGN_OR_RETURN(uint64_t size, (*file)->Size());
    if (size > st.synced_size) TALLY_RETURN_IF_ERROR((*file)->Truncate(st.synced_size));
    st.written_size = st.synced_size;
  }
  return Status::OK();
}

Status FaultInjectionFileSystem::TearLastWrite(const std::string& path, uint64_t keep_bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<File> file, base_->Open(path, OpenOptions{}));
  TALLY_ASSIGN_OR_RETURN(uint64_t size, file->Size());
  auto it = files_.find(TrimSlash(path));
  uint64_t synced = it == files_.end() ? size : it->second.synced_size;
  uint64_t keep = std::min(size, synced + keep_bytes);
  if (keep < size) TALLY_RETURN_IF_ERROR(file->Truncate(keep));
  if (it != files_.end()) it->second.written_size = keep;
  return Status::OK();
}

Status FaultInjectionFileSystem::FlipBit(const std::string& path, uint64_t offset, int bit) {
  if (bit < 0 || bit > 7) return InvalidArgument("FlipBit: bit must be in [0, 8)");
  std::lock_guard<std::mutex> lock(mu_);
  TALLY_ASSIGN_OR_RETURN(std::unique_ptr<File> file, base_->Open(path, OpenOptions{}));
  char byte = 0;
  TALLY_ASSIGN_OR_RETURN(size_t n, file->Read(offset, std::span<char>(&byte, 1)));
  if (n != 1) {
    return InvalidArgument("FlipBit: offset " + std::to_string(offset) + " is past the end of " +
                           path);
  }
  byte = static_cast<char>(byte ^ (1 << bit));
  ConstBuffer buf(&byte, 1);
  return file->Write(offset, std::span<const ConstBuffer>(&buf, 1), /*sync=*/false);
}

void FaultInjectionFileSystem::FailNext(FaultOp op, int count, std::string path_substring) {
  if (count <= 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  failures_.push_back(Failure{op, count, std::move(path_substring)});
}

void FaultInjectionFileSystem::ClearFailures() {
  std::lock_guard<std::mutex> lock(mu_);
  failures_.clear();
}

uint64_t FaultInjectionFileSystem::SyncedSize(const std::string& path) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = files_.find(TrimSlash(path));
  return it == files_.end() ? 0 : it->second.synced_size;
}

}  // namespace tally
