#include "local_cluster.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <google/protobuf/struct.pb.h>
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

std::string Str(const pb::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? "" : it->second.string_value();
}

uint64_t Num(const pb::Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? 0 : static_cast<uint64_t>(it->second.number_value());
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
  pb::Struct root;
  auto st = pb::util::JsonStringToMessage(text.str(), &root);
  if (!st.ok()) {
    return Malformed(path + " does not parse as JSON (" + st.ToString() +
                     "); stop the nodes by hand and remove the directory");
  }
  LocalCluster c;
  c.dir = dir;
  c.server_bin = Str(root, "server_bin");
  c.layout_file = Str(root, "layout_file");
  c.epoch = Num(root, "epoch");
  auto nodes = root.fields().find("nodes");
  if (nodes == root.fields().end() || nodes->second.list_value().values().empty()) {
    return Malformed(path + " lists no nodes; remove the directory and run `local up` again");
  }
  for (const auto& v : nodes->second.list_value().values()) {
    const pb::Struct& s = v.struct_value();
    LocalNode n;
    n.id = Num(s, "id");
    n.endpoint = Str(s, "endpoint");
    n.pid = static_cast<int64_t>(Num(s, "pid"));
    n.data_dir = Str(s, "data_dir");
    n.log_file = Str(s, "log_file");
    auto roles = s.fields().find("roles");
    if (roles != s.fields().end()) {
      for (const auto& r : roles->second.list_value().values()) n.roles.push_back(r.string_value());
    }
    if (n.id == 0 || n.endpoint.empty() || n.data_dir.empty()) {
      return Malformed(path + " has a node without id, endpoint or data_dir");
    }
    c.nodes.push_back(std::move(n));
  }
  return c;
}

Status WriteCluster(const LocalCluster& c) {
  pb::Struct root;
  auto& f = *root.mutable_fields();
  f["server_bin"].set_string_value(c.server_bin);
  f["layout_file"].set_string_value(c.layout_file);
  f["epoch"].set_number_value(static_cast<double>(c.epoch));
  auto* nodes = f["nodes"].mutable_list_value();
  for (const auto& n : c.nodes) {
    auto& nf = *nodes->add_values()->mutable_struct_value()->mutable_fields();
    nf["id"].set_number_value(static_cast<double>(n.id));
    nf["endpoint"].set_string_value(n.endpoint);
    auto* roles = nf["roles"].mutable_list_value();
    for (const auto& r : n.roles) roles->add_values()->set_string_value(r);
    nf["pid"].set_number_value(static_cast<double>(n.pid));
    nf["data_dir"].set_string_value(n.data_dir);
    nf["log_file"].set_string_value(n.log_file);
  }
  pb::util::JsonPrintOptions opts;
  opts.add_whitespace = true;
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
