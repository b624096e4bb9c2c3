#include "local_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tally/base/file_lock.h"
#include "tally/proto/local_cluster.pb.h"

namespace tally::ctl {

namespace pb = google::protobuf;

bool LocalNode::sequencer() const {
  for (const auto& r : roles) {
    if (r == "sequencer") return true;
  }
  return false;
}

bool LocalNode::layout() const {
  for (const auto& r : roles) {
    if (r == "layout") return true;
  }
  return false;
}

LocalNode* LocalCluster::Find(uint64_t id) {
  for (auto& n : nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

const LocalNode* LocalCluster::Find(uint64_t id) const {
  for (const auto& n : nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

std::string LocalCluster::Endpoints() const {
  std::string out;
  for (const auto& n : nodes) out += (out.empty() ? "" : ",") + n.endpoint;
  return out;
}

std::string ClusterFile(const std::string& dir) { return dir + "/cluster.json"; }

namespace {

Status WriteFileAtomically(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) return IoError("cannot write " + tmp + ": " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return IoError("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  }
  return Status::OK();
}

}  // namespace

Result<LocalCluster> ReadCluster(const std::string& dir) {
  const std::string path = ClusterFile(dir);
  std::ifstream in(path);
  if (!in) {
    return NotFound("no local cluster in " + dir + " (" + path +
                    " is missing); create one with `tallyctl local up --dir " + dir + "`");
  }
  std::stringstream text;
  text << in.rdbuf();
  proto::LocalClusterState root;
  pb::util::JsonParseOptions parse;
  parse.ignore_unknown_fields = true;  // files written by newer tallyctl versions
  auto st = pb::util::JsonStringToMessage(text.str(), &root, parse);
  if (!st.ok()) {
    return Malformed(path + " does not parse as a cluster file (" + st.ToString() +
                     "); stop the nodes by hand and remove the directory");
  }
  LocalCluster c;
  c.dir = dir;
  c.server_bin = root.server_bin();
  c.layout_file = root.layout_file();
  c.epoch = root.epoch();
  c.segment_mb = root.segment_mb();
  c.no_heal = root.no_heal();
  c.exit_with = root.exit_with();
  c.write_engine = root.write_engine();
  if (root.has_zero_ahead_mb()) c.zero_ahead_mb = static_cast<int64_t>(root.zero_ahead_mb());
  if (root.nodes().empty()) {
    return Malformed(path + " lists no nodes; remove the directory and run `local up` again");
  }
  for (const auto& s : root.nodes()) {
    LocalNode n;
    n.id = s.id();
    n.endpoint = s.endpoint();
    n.pid = s.pid();
    n.data_dir = s.data_dir();
    n.log_file = s.log_file();
    n.roles.assign(s.roles().begin(), s.roles().end());
    if (n.id == 0 || n.endpoint.empty() || n.data_dir.empty()) {
      return Malformed(path + " has a node without id, endpoint or data_dir");
    }
    c.nodes.push_back(std::move(n));
  }
  return c;
}

Status WriteCluster(const LocalCluster& c) {
  proto::LocalClusterState root;
  root.set_server_bin(c.server_bin);
  root.set_layout_file(c.layout_file);
  root.set_epoch(c.epoch);
  root.set_segment_mb(c.segment_mb);
  root.set_no_heal(c.no_heal);
  root.set_exit_with(c.exit_with);
  root.set_write_engine(c.write_engine);
  if (c.zero_ahead_mb >= 0) root.set_zero_ahead_mb(static_cast<uint64_t>(c.zero_ahead_mb));
  for (const auto& n : c.nodes) {
    auto* node = root.add_nodes();
    node->set_id(n.id);
    node->set_endpoint(n.endpoint);
    for (const auto& r : n.roles) node->add_roles(r);
    node->set_pid(n.pid);
    node->set_data_dir(n.data_dir);
    node->set_log_file(n.log_file);
  }
  pb::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string text;
  auto st = pb::util::MessageToJsonString(root, &text, opts);
  if (!st.ok()) return Internal("cannot encode cluster.json: " + st.ToString());
  return WriteFileAtomically(ClusterFile(c.dir), text);
}

proto::Layout MakeLayout(const std::vector<std::string>& endpoints, uint32_t stripes,
                         uint32_t chain) {
  proto::Layout layout;
  layout.set_epoch(0);
  layout.set_cluster_id("local");
  // Every node is a layout server and a sequencer: node 1 the primary, the
  // others standbys that take over when a reconfiguration names them.
  for (const auto& e : endpoints) layout.add_sequencers(e);
  for (const auto& e : endpoints) layout.add_layout_servers(e);
  auto* seg = layout.add_segments();
  seg->set_start(0);
  seg->set_end(0);
  const size_t n = endpoints.size();
  for (uint32_t s = 0; s < stripes; ++s) {
    auto* stripe = seg->add_stripes();
    for (uint32_t k = 0; k < chain; ++k) stripe->add_log_units(endpoints[(s + k) % n]);
  }
  for (size_t i = 0; i < n; ++i) {
    auto* node = layout.add_nodes();
    node->set_id(i + 1);
    node->set_endpoint(endpoints[i]);
  }
  return layout;
}

Status WriteLayoutFile(const proto::Layout& layout, const std::string& path) {
  pb::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  opts.preserve_proto_field_names = true;
  opts.always_print_primitive_fields = true;
  std::string text;
  auto st = pb::util::MessageToJsonString(layout, &text, opts);
  if (!st.ok()) return Internal("cannot encode the layout: " + st.ToString());
  return WriteFileAtomically(path, text);
}

Result<uint16_t> PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return IoError(std::string("socket: ") + std::strerror(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    close(fd);
    return IoError(std::string("cannot pick a free loopback port: ") + std::strerror(err));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string DefaultServerBinary() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "tally-server";
  return (self.parent_path() / "tally-server").string();
}

Result<pid_t> SpawnNode(const LocalCluster& cluster, const LocalNode& node,
                        const std::string& ready_file) {
  std::remove(ready_file.c_str());
  std::string roles;
  for (const auto& r : node.roles) roles += (roles.empty() ? "" : ",") + r;
  std::vector<std::string> argv = {cluster.server_bin, "--node-id",         std::to_string(node.id),
                                   "--listen",         node.endpoint,       "--data-dir",
                                   node.data_dir,      "--roles",           roles,
                                   "--layout",         cluster.layout_file, "--ready-file",
                                   ready_file};
  if (cluster.segment_mb != 0) {
    argv.push_back("--segment-mb");
    argv.push_back(std::to_string(cluster.segment_mb));
  }
  if (cluster.no_heal) argv.push_back("--no-heal");
  if (!cluster.write_engine.empty()) {
    argv.push_back("--write-engine");
    argv.push_back(cluster.write_engine);
  }
  if (cluster.zero_ahead_mb >= 0) {
    argv.push_back("--zero-ahead-mb");
    argv.push_back(std::to_string(cluster.zero_ahead_mb));
  }
  if (cluster.exit_with != 0) {
    argv.push_back("--exit-with");
    argv.push_back(std::to_string(cluster.exit_with));
  }
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return IoError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    // Child: only async-signal-safe calls until exec.
    setsid();
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(node.log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in >= 0) dup2(in, 0);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    // Drop every other descriptor (e.g. a caller's pipe, which would keep
    // it waiting for EOF as long as the node runs).
    if (syscall(SYS_close_range, 3u, ~0u, 0u) != 0) {
      for (int fd = 3; fd < 4096; ++fd) close(fd);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

namespace {

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

// PF_EXITING in /proc/<pid>/stat's flags: the task has begun to exit.
constexpr unsigned long kPfExiting = 0x4;

// A pidfd: a handle on one process that, unlike its pid, can never come to
// name another process. Readable once the whole process (every thread) has
// exited -- by then the kernel has closed its files and dropped its locks.
class Pidfd {
 public:
  explicit Pidfd(pid_t pid) : fd_(static_cast<int>(syscall(SYS_pidfd_open, pid, 0u))) {
    if (fd_ < 0) error_ = errno;
  }
  ~Pidfd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Pidfd(const Pidfd&) = delete;
  Pidfd& operator=(const Pidfd&) = delete;

  bool ok() const { return fd_ >= 0; }
  // pidfd_open failed because the kernel lacks it (Linux < 5.3).
  bool unsupported() const { return fd_ < 0 && error_ == ENOSYS; }

  // Whether the process has fully exited, waiting up to `timeout`.
  bool WaitExited(std::chrono::milliseconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      int r = poll(&p, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
      if (r > 0) return true;
      if (r == 0 || errno != EINTR) return false;
    }
  }
  bool Exited() const { return WaitExited(std::chrono::milliseconds(0)); }

  bool Signal(int sig) const { return syscall(SYS_pidfd_send_signal, fd_, sig, nullptr, 0u) == 0; }

 private:
  int fd_ = -1;
  int error_ = 0;
};

// What /proc says about `pid` (which may have been recycled).
enum class ProcView {
  kNode,     // running with the node's --data-dir
  kExiting,  // exiting or a zombie, whatever it ran: its command line is gone
  kOther,    // another program
  kMissing,  // no such process
};

ProcView ViewProc(pid_t pid, const std::string& data_dir) {
  const std::string proc = "/proc/" + std::to_string(pid);
  // The command line first: an exiting process loses it (with its memory)
  // only after it is flagged PF_EXITING, so a stat read afterwards shows the
  // flag (or a zombie) when the command line came back empty for that reason.
  std::ifstream cmd(proc + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  std::ifstream stat(proc + "/stat");
  std::string stat_line;
  if (!stat || !std::getline(stat, stat_line)) return ProcView::kMissing;
  // "pid (comm) state ppid pgrp session tty_nr tpgid flags ...": the fields
  // follow the parenthesized command name, which may hold anything.
  auto close_paren = stat_line.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= stat_line.size()) {
    return ProcView::kMissing;
  }
  std::istringstream fields(stat_line.substr(close_paren + 2));
  char state = 0;
  long long skip = 0;
  unsigned long flags = 0;
  fields >> state >> skip >> skip >> skip >> skip >> skip >> flags;
  // A killed process's main thread turns zombie (or loses its command line
  // with its memory) while other threads may still be tearing down and
  // holding its files; only the pidfd says when all of them are done.
  if (state == 'Z' || state == 'X' || (flags & kPfExiting) != 0) return ProcView::kExiting;
  std::string want = std::string("--data-dir") + '\0' + data_dir + '\0';
  return cmdline.find(want) != std::string::npos ? ProcView::kNode : ProcView::kOther;
}

// Without pidfds (Linux < 5.3): whether `pid` is gone as far as the node is
// concerned -- no such process, another program, or a zombie whose every
// thread has exited (/proc/<pid>/task lists only the zombie main thread).
bool ProcGoneWithoutPidfd(pid_t pid, const std::string& data_dir) {
  ProcView view = ViewProc(pid, data_dir);
  if (view == ProcView::kMissing || view == ProcView::kOther) return true;
  if (view == ProcView::kNode) return false;
  std::error_code ec;
  size_t tasks = 0;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/task", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++tasks;
  }
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  auto close_paren = line.rfind(')');
  bool zombie = close_paren != std::string::npos && close_paren + 2 < line.size() &&
                (line[close_paren + 2] == 'Z' || line[close_paren + 2] == 'X');
  return zombie && tasks <= 1;
}

// For our own child (started by this tallyctl): 1 if running, 0 if it has
// exited (reaped now), -1 if `pid` is not our child. waitpid knows exactly,
// even between fork and exec, when /proc still shows tallyctl's command
// line, and reports an exit only once every thread has exited.
int OurChild(pid_t pid) {
  int status = 0;
  pid_t r = waitpid(pid, &status, WNOHANG);
  if (r == 0) return 1;
  if (r == pid) return 0;
  return -1;
}

// Whether `pid`, held by `fd` (opened before), is the node's running process.
bool IsNodeProcess(pid_t pid, const Pidfd& fd, const LocalNode& node) {
  int child = OurChild(pid);
  if (child >= 0) return child == 1;
  // Not our child: a pid from cluster.json, recycled or not. It is the node
  // only if it runs with that node's data directory. If the pidfd's process
  // has not exited after /proc was read, /proc described that process (a
  // pid is not reused while its process lives).
  return ViewProc(pid, node.data_dir) == ProcView::kNode && (!fd.ok() || !fd.Exited());
}

}  // namespace

bool NodeProcessAlive(const LocalNode& node) {
  if (node.pid <= 0) return false;
  const pid_t pid = static_cast<pid_t>(node.pid);
  Pidfd fd(pid);
  if (!fd.ok() && !fd.unsupported()) return false;  // no such process
  return IsNodeProcess(pid, fd, node);
}

bool SignalNode(const LocalNode& node, int sig) {
  if (node.pid <= 0) return false;
  const pid_t pid = static_cast<pid_t>(node.pid);
  Pidfd fd(pid);
  if (fd.unsupported()) return IsNodeProcess(pid, fd, node) && kill(pid, sig) == 0;
  // Signalled through the pidfd, so that it cannot hit a process that took
  // the pid over after the check.
  return fd.ok() && IsNodeProcess(pid, fd, node) && fd.Signal(sig);
}

bool WaitNodeGone(const LocalNode& node, std::chrono::milliseconds timeout) {
  if (node.pid <= 0) return true;
  const pid_t pid = static_cast<pid_t>(node.pid);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  Pidfd fd(pid);
  if (fd.unsupported()) {
    for (;;) {
      if (OurChild(pid) == 0 || ProcGoneWithoutPidfd(pid, node.data_dir)) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  if (!fd.ok()) return true;  // no such process (ESRCH)
  int child = OurChild(pid);
  if (child == 0) return true;
  if (child < 0) {
    // Not our child. "Gone" is not "no longer looks like the node in /proc":
    // after SIGKILL the main thread turns zombie, or loses its command line,
    // while other threads are still exiting and the process still holds its
    // files -- among them the data dir's RocksDB LOCK, which the kernel drops
    // only once the last thread has closed it. So a process that is (or may
    // be, exiting) the node is waited for through the pidfd, which turns
    // readable only once every thread has exited.
    ProcView view = ViewProc(pid, node.data_dir);
    if ((view == ProcView::kMissing || view == ProcView::kOther) && !fd.Exited()) return true;
  }
  bool gone = fd.WaitExited(std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now()));
  if (gone && child == 1) OurChild(pid);  // reap it
  return gone;
}

Status WaitDataDirFree(const LocalNode& node, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto held = FindHeldLock(node.data_dir);
    if (!held) return Status::OK();
    if (std::chrono::steady_clock::now() >= deadline) {
      std::string holder = "pid " + std::to_string(held->pid);
      std::ifstream comm("/proc/" + std::to_string(held->pid) + "/comm");
      std::string name;
      if (comm && std::getline(comm, name) && !name.empty()) holder += " (" + name + ")";
      return FailedPrecondition(
          "the data dir " + node.data_dir + " is in use by another process: " + holder +
          " holds its lock " + held->path + " (still after " + std::to_string(timeout.count()) +
          " ms); stop that process (kill " + std::to_string(held->pid) + ") and retry");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::string LastLogLine(const std::string& path) {
  std::ifstream in(path);
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty()) last = line;
  }
  return last;
}

}  // namespace tally::ctl
