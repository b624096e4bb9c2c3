#pragma once

// A `tallyctl local` cluster for benchmarks: started with `local up`,
// stopped with `local down` on destruction (and by DownAllClusters on a
// fatal error), nodes killed with `local kill` (SIGKILL by recorded pid).

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "tally/base/result.h"
#include "tally/base/status.h"

namespace tally::bench {

// stdout + stderr and the exit code of a shell command.
std::pair<int, std::string> RunShell(const std::string& cmd);

// The tallyctl binary next to this executable (or "tallyctl" on PATH).
std::string TallyctlNextToSelf();

// Stops every cluster still up (for fatal-error paths).
void DownAllClusters();

class LocalCluster {
 public:
  // `local up --nodes N ARGS --dir DIR` (DIR emptied first). Errors: the
  // command's output.
  static Result<std::unique_ptr<LocalCluster>> Up(const std::string& dir, int nodes,
                                                  const std::string& args = "");
  ~LocalCluster();

  const std::vector<std::string>& endpoints() const { return endpoints_; }
  const std::vector<std::string>& pids() const { return pids_; }
  std::string EndpointList() const;
  // `local kill NODE` (1-based): SIGKILL, returns once the process is gone.
  Status Kill(int node);
  // `local start NODE`, after removing its data dir when `wipe`.
  Status Start(int node, bool wipe);
  const std::string& dir() const { return dir_; }

 private:
  LocalCluster() = default;
  std::string dir_;
  std::vector<std::string> endpoints_;
  std::vector<std::string> pids_;
};

}  // namespace tally::bench
