#include "local_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "tally/proto/local_cluster.pb.h"

namespace tally::ctl {

namespace pb = google::protobuf;

bool LocalNode::sequencer() const {
  for (const auto& r : roles) {
    if (r == "sequencer") return true;
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
  layout.add_sequencers(endpoints.front());
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

bool NodeProcessAlive(const LocalNode& node) {
  if (node.pid <= 0) return false;
  const pid_t pid = static_cast<pid_t>(node.pid);
  // Our own child (started by this tallyctl): waitpid knows exactly, even
  // between fork and exec, when /proc still shows tallyctl's command line.
  int status = 0;
  pid_t r = waitpid(pid, &status, WNOHANG);
  if (r == 0) return true;     // running
  if (r == pid) return false;  // exited; now reaped
  // Not our child: a pid from cluster.json, recycled or not. It is the node
  // only if it runs with that node's data directory.
  const std::string proc = "/proc/" + std::to_string(pid);
  std::ifstream stat(proc + "/stat");
  std::string stat_line;
  if (!stat || !std::getline(stat, stat_line)) return false;
  // The state follows the parenthesized command name.
  auto close_paren = stat_line.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= stat_line.size()) return false;
  char state = stat_line[close_paren + 2];
  if (state == 'Z' || state == 'X') return false;
  std::ifstream cmd(proc + "/cmdline", std::ios::binary);
  std::string cmdline((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
  std::string want = std::string("--data-dir") + '\0' + node.data_dir + '\0';
  return cmdline.find(want) != std::string::npos;
}

bool SignalNode(const LocalNode& node, int sig) {
  if (!NodeProcessAlive(node)) return false;
  return kill(static_cast<pid_t>(node.pid), sig) == 0;
}

bool WaitNodeGone(const LocalNode& node, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (NodeProcessAlive(node)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
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
