#pragma once

// A gtest fixture for tests that run a `tallyctl local` cluster of real
// tally-server processes on loopback, in a fresh temporary directory. Its
// TearDown always stops the cluster (`local down`) and, as a last resort,
// SIGKILLs any recorded pid still running, so no process outlives a test.
// The including test must define TALLYCTL_BIN (the tallyctl path).

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "process_util.h"

namespace tally::testing {

// Whether `pid` is a live process (not gone, not a zombie).
inline bool ProcessRunning(int64_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!stat || !std::getline(stat, line)) return false;
  auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z';
}

class LocalClusterTestBase : public ::testing::Test {
 protected:
  const std::string kCtl = TALLYCTL_BIN;

  void TearDown() override {
    RunCommand(Local("down") + " 2>&1");
    for (int64_t pid : RecordedPids()) {
      if (ProcessRunning(pid)) kill(static_cast<pid_t>(pid), SIGKILL);
    }
    // Nodes started by a `local up` that died before recording them: found by
    // this test's unique data directory on their command line.
    for (int64_t pid : PidsUsingDir(dir_.path())) kill(static_cast<pid_t>(pid), SIGKILL);
    if (HasFailure()) PrintNodeLogs();
  }

  // The last lines of every node's log, for a failure in CI (the directory
  // goes with the test). TALLY_TEST_KEEP_LOGS=DIR copies the logs there too.
  void PrintNodeLogs() const {
    const char* keep = std::getenv("TALLY_TEST_KEEP_LOGS");
    for (const auto& e : std::filesystem::directory_iterator(dir_.path())) {
      const std::string name = e.path().filename();
      if (name.rfind("node-", 0) != 0 || e.path().extension() != ".log") continue;
      std::ifstream in(e.path());
      std::vector<std::string> lines;
      for (std::string line; std::getline(in, line);) lines.push_back(line);
      const size_t from = lines.size() > 60 ? lines.size() - 60 : 0;
      std::fprintf(stderr, "--- %s (last %zu of %zu lines)\n", name.c_str(), lines.size() - from,
                   lines.size());
      for (size_t i = from; i < lines.size(); ++i) std::fprintf(stderr, "%s\n", lines[i].c_str());
      if (keep != nullptr) {
        std::error_code ec;
        std::filesystem::create_directories(keep, ec);
        std::filesystem::copy_file(e.path(), std::filesystem::path(keep) / name,
                                   std::filesystem::copy_options::overwrite_existing, ec);
      }
    }
  }

  // Processes whose command line holds `--data-dir DIR/...`.
  static std::vector<int64_t> PidsUsingDir(const std::string& dir) {
    std::vector<int64_t> pids;
    const std::string want = std::string("--data-dir") + '\0' + dir + "/";
    for (const auto& e : std::filesystem::directory_iterator("/proc")) {
      const std::string name = e.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream cmd(e.path() / "cmdline", std::ios::binary);
      std::string line((std::istreambuf_iterator<char>(cmd)), std::istreambuf_iterator<char>());
      if (line.find(want) != std::string::npos) pids.push_back(std::stoll(name));
    }
    return pids;
  }

  // The command line `tallyctl local SUB ARGS --dir DIR`.
  std::string Local(const std::string& sub, const std::string& args = "") const {
    return kCtl + " local " + sub + " " + args + " --dir " + dir_.path();
  }

  // Pids recorded in DIR/cluster.json (protobuf JSON: 64-bit ints may be quoted).
  std::vector<int64_t> RecordedPids() const {
    std::ifstream in(dir_.path() + "/cluster.json");
    std::stringstream text;
    text << in.rdbuf();
    std::string s = text.str();
    std::vector<int64_t> pids;
    std::regex re("\"pid\":\\s*\"?(\\d+)");
    for (auto it = std::sregex_iterator(s.begin(), s.end(), re); it != std::sregex_iterator();
         ++it) {
      pids.push_back(std::stoll((*it)[1]));
    }
    return pids;
  }

  // `local up --nodes N ARGS`; fills endpoints_ from the printed export line.
  void Up(int nodes = 3, const std::string& args = "") {
    // --exit-with: the nodes stop if this test process dies without its
    // TearDown (an abort, a crash), instead of running on.
    auto up = RunCommand(Local("up", "--nodes " + std::to_string(nodes) + " --exit-with " +
                                         std::to_string(getpid()) + " " + args) +
                         " 2>&1");
    ASSERT_EQ(up.exit_code, 0) << up.out;
    std::smatch m;
    std::regex re("export TALLY_ENDPOINTS=([^\\n]*)");
    ASSERT_TRUE(std::regex_search(up.out, m, re)) << up.out;
    std::stringstream list(m[1].str());
    for (std::string ep; std::getline(list, ep, ',');) endpoints_.push_back(ep);
    ASSERT_EQ(endpoints_.size(), static_cast<size_t>(nodes)) << up.out;
  }

  TempDir dir_;
  std::vector<std::string> endpoints_;
};

}  // namespace tally::testing
