#include "tally/base/mem_env.h"

#include <cerrno>
#include <cstring>
#include <utility>

namespace tally {

uint64_t SeededRandom::Next() {
  std::lock_guard<std::mutex> lock(mu_);
  // SplitMix64 (Steele, Lea, Flood 2014).
  uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

struct MemFileSystem::Node {
  std::mutex mu;
  std::string data;  // GUARDED_BY(mu)
};

namespace {

// Same messages and codes as the POSIX file system, so that tests written
// against one hold against the other.
Status PathError(std::string_view what, const std::string& path, int err) {
  std::string m(what);
  m += ' ';
  m += path;
  Status s = ErrnoStatus(m, err);
  if (err == ENOENT) return NotFound(s.message());
  return s;
}

// Collapses repeated '/' and drops a trailing '/', so "a//b/" names "a/b".
std::string Normalize(std::string_view path) {
  std::string out;
  out.reserve(path.size());
  for (char c : path) {
    if (c == '/' && !out.empty() && out.back() == '/') continue;
    out += c;
  }
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  return out;
}

// "" for a relative name with no directory part, "/" for a top-level entry.
std::string Parent(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return "";
  if (slash == 0) return path.size() > 1 ? "/" : "";
  return path.substr(0, slash);
}

// True if `path` lies strictly below directory `dir`.
bool IsBelow(const std::string& path, const std::string& dir) {
  if (dir == "/") return path.size() > 1 && path[0] == '/';
  return path.size() > dir.size() + 1 && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

class MemFile final : public File {
 public:
  MemFile(std::string path, std::shared_ptr<MemFileSystem::Node> node, bool read_only)
      : path_(std::move(path)), node_(std::move(node)), read_only_(read_only) {}

  Result<size_t> Read(uint64_t offset, std::span<char> out) override {
    std::lock_guard<std::mutex> lock(node_->mu);
    const std::string& d = node_->data;
    if (offset >= d.size()) return size_t{0};
    size_t n = std::min<uint64_t>(out.size(), d.size() - offset);
    std::memcpy(out.data(), d.data() + offset, n);
    return n;
  }

  Status Write(uint64_t offset, std::span<const ConstBuffer> bufs, bool sync) override {
    if (read_only_) return PathError("write", path_, EBADF);
    uint64_t total = 0;
    for (const ConstBuffer& b : bufs) total += b.size();
    std::lock_guard<std::mutex> lock(node_->mu);
    std::string& d = node_->data;
    if (d.size() < offset + total) d.resize(offset + total, '\0');
    uint64_t pos = offset;
    for (const ConstBuffer& b : bufs) {
      if (!b.empty()) std::memcpy(d.data() + pos, b.data(), b.size());
      pos += b.size();
    }
    return Status::OK();
  }

  Status Sync() override { return Status::OK(); }

  Result<uint64_t> Size() override {
    std::lock_guard<std::mutex> lock(node_->mu);
    return static_cast<uint64_t>(node_->data.size());
  }

  Status Truncate(uint64_t size) override {
    if (read_only_) return PathError("ftruncate", path_, EINVAL);
    std::lock_guard<std::mutex> lock(node_->mu);
    node_->data.resize(size, '\0');
    return Status::OK();
  }

  const std::string& path() const override { return path_; }

 private:
  const std::string path_;
  const std::shared_ptr<MemFileSystem::Node> node_;
  const bool read_only_;
};

}  // namespace

MemFileSystem::MemFileSystem() { dirs_["/"] = true; }
MemFileSystem::~MemFileSystem() = default;

Result<std::unique_ptr<File>> MemFileSystem::Open(const std::string& path, OpenOptions options) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(mu_);
  if (dirs_.count(p) != 0) return PathError("open", path, EISDIR);
  auto it = files_.find(p);
  if (it == files_.end()) {
    if (!options.create) return PathError("open", path, ENOENT);
    std::string parent = Parent(p);
    if (!parent.empty() && dirs_.count(parent) == 0) {
      return PathError("open", path, files_.count(parent) != 0 ? ENOTDIR : ENOENT);
    }
    it = files_.emplace(p, std::make_shared<Node>()).first;
  } else if (options.create && options.exclusive) {
    return PathError("open", path, EEXIST);
  }
  return std::unique_ptr<File>(std::make_unique<MemFile>(path, it->second, options.read_only));
}

Status MemFileSystem::Remove(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(mu_);
  if (files_.erase(p) != 0) return Status::OK();
  if (dirs_.count(p) == 0) return PathError("remove", path, ENOENT);
  if (p == "/") return PathError("remove", path, EBUSY);
  auto below = [&](const auto& m) {
    auto it = m.upper_bound(p);
    return it != m.end() && IsBelow(it->first, p);
  };
  if (below(files_) || below(dirs_)) return PathError("remove", path, ENOTEMPTY);
  dirs_.erase(p);
  return Status::OK();
}

Status MemFileSystem::Rename(const std::string& from, const std::string& to) {
  std::string f = Normalize(from);
  std::string t = Normalize(to);
  std::lock_guard<std::mutex> lock(mu_);
  std::string what = "rename " + from + " ->";
  std::string to_parent = Parent(t);
  bool to_parent_ok = to_parent.empty() || dirs_.count(to_parent) != 0;
  auto fit = files_.find(f);
  if (fit != files_.end()) {
    if (dirs_.count(t) != 0) return PathError(what, to, EISDIR);
    if (!to_parent_ok) return PathError(what, to, ENOENT);
    if (f == t) return Status::OK();
    std::shared_ptr<Node> node = fit->second;
    files_.erase(fit);
    files_[t] = std::move(node);  // replaces an existing file, like rename(2)
    return Status::OK();
  }
  if (dirs_.count(f) == 0) return PathError(what, to, ENOENT);
  if (f == t) return Status::OK();
  if (f == "/" || IsBelow(t, f)) return PathError(what, to, EINVAL);
  if (!to_parent_ok) return PathError(what, to, ENOENT);
  if (files_.count(t) != 0) return PathError(what, to, ENOTDIR);
  if (dirs_.count(t) != 0) {
    auto it = files_.upper_bound(t);
    auto dit = dirs_.upper_bound(t);
    if ((it != files_.end() && IsBelow(it->first, t)) ||
        (dit != dirs_.end() && IsBelow(dit->first, t))) {
      return PathError(what, to, ENOTEMPTY);
    }
  }
  // Move the directory and everything below it.
  auto move_all = [&](auto& m) {
    using Map = std::remove_reference_t<decltype(m)>;
    Map moved;
    for (auto it = m.lower_bound(f); it != m.end();) {
      if (it->first != f && !IsBelow(it->first, f)) {
        // Entries like "f-x" sort between "f" and "f/..."; skip them.
        if (it->first.compare(0, f.size(), f) != 0) break;
        ++it;
        continue;
      }
      moved[t + it->first.substr(f.size())] = std::move(it->second);
      it = m.erase(it);
    }
    for (auto& [k, v] : moved) m[k] = std::move(v);
  };
  move_all(files_);
  move_all(dirs_);
  return Status::OK();
}

Status MemFileSystem::CreateDirs(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(mu_);
  size_t pos = 0;
  while (pos != std::string::npos) {
    size_t next = p.find('/', pos + 1);
    std::string prefix = next == std::string::npos ? p : p.substr(0, next);
    pos = next;
    if (prefix.empty() || prefix == "/") continue;
    if (files_.count(prefix) != 0) return PathError("mkdir", prefix, ENOTDIR);
    dirs_[prefix] = true;
  }
  return Status::OK();
}

Result<std::vector<std::string>> MemFileSystem::ListDir(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(mu_);
  if (dirs_.count(p) == 0) {
    return PathError("opendir", path, files_.count(p) != 0 ? ENOTDIR : ENOENT);
  }
  std::vector<std::string> names;
  auto collect = [&](const auto& m) {
    for (auto it = m.upper_bound(p); it != m.end(); ++it) {
      const std::string& k = it->first;
      if (k.compare(0, p.size(), p) != 0) break;
      if (!IsBelow(k, p)) continue;
      if (Parent(k) == p) names.push_back(k.substr(p == "/" ? 1 : p.size() + 1));
    }
  };
  collect(files_);
  collect(dirs_);
  return names;
}

bool MemFileSystem::Exists(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(mu_);
  return files_.count(p) != 0 || dirs_.count(p) != 0;
}

Status MemFileSystem::SyncDir(const std::string& path) {
  std::string p = Normalize(path);
  std::lock_guard<std::mutex> lock(mu_);
  if (dirs_.count(p) == 0) {
    return PathError("open", path, files_.count(p) != 0 ? ENOTDIR : ENOENT);
  }
  return Status::OK();
}

}  // namespace tally
