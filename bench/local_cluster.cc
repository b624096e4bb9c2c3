#include "local_cluster.h"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <sstream>

namespace tally::bench {

namespace {
std::vector<std::string> g_dirs;  // clusters up
}  // namespace

std::pair<int, std::string> RunShell(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, "popen failed"};
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  int rc = ::pclose(p);
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, out};
}

std::string TallyctlNextToSelf() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "tallyctl";
  return (self.parent_path() / "tallyctl").string();
}

void DownAllClusters() {
  for (const auto& d : g_dirs) RunShell(TallyctlNextToSelf() + " local down --dir " + d);
  g_dirs.clear();
}

Result<std::unique_ptr<LocalCluster>> LocalCluster::Up(const std::string& dir, int nodes,
                                                       const std::string& args) {
  std::filesystem::remove_all(dir);
  std::unique_ptr<LocalCluster> c(new LocalCluster());
  c->dir_ = dir;
  g_dirs.push_back(dir);
  const std::string ctl = TallyctlNextToSelf();
  auto [rc, out] = RunShell(ctl + " local up --nodes " + std::to_string(nodes) + " --exit-with " +
                            std::to_string(getpid()) + " " + args + " --dir " + dir);
  if (rc != 0) return Unavailable("local up: " + out);
  std::smatch m;
  if (!std::regex_search(out, m, std::regex("export TALLY_ENDPOINTS=([^\\n]*)"))) {
    return Malformed("local up printed no endpoints: " + out);
  }
  std::stringstream list(m[1].str());
  for (std::string ep; std::getline(list, ep, ',');) c->endpoints_.push_back(ep);
  auto [src, status] = RunShell(ctl + " --output json local status --dir " + dir);
  std::regex re("\"pid\":\\s*(\\d+)");
  for (auto it = std::sregex_iterator(status.begin(), status.end(), re);
       it != std::sregex_iterator(); ++it) {
    c->pids_.push_back((*it)[1]);
  }
  return c;
}

LocalCluster::~LocalCluster() {
  RunShell(TallyctlNextToSelf() + " local down --dir " + dir_);
  std::erase(g_dirs, dir_);
}

std::string LocalCluster::EndpointList() const {
  std::string out;
  for (const auto& e : endpoints_) out += (out.empty() ? "" : ",") + e;
  return out;
}

Status LocalCluster::Kill(int node) {
  auto [rc, out] =
      RunShell(TallyctlNextToSelf() + " local kill " + std::to_string(node) + " --dir " + dir_);
  if (rc != 0) return Internal("local kill " + std::to_string(node) + ": " + out);
  return Status::OK();
}

Status LocalCluster::Start(int node, bool wipe) {
  if (wipe) std::filesystem::remove_all(dir_ + "/node-" + std::to_string(node));
  auto [rc, out] =
      RunShell(TallyctlNextToSelf() + " local start " + std::to_string(node) + " --dir " + dir_);
  if (rc != 0) return Internal("local start " + std::to_string(node) + ": " + out);
  return Status::OK();
}

}  // namespace tally::bench
