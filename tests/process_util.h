#pragma once

// Helpers for tests that run real tally processes on loopback: start a
// process, wait for its ready file, signal it by pid (never by name), run a
// command and capture its output.

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace tally::testing {

// A child process; killed with SIGKILL on destruction if still running.
class Child {
 public:
  // Starts argv[0] with the arguments; stderr goes to `log_path`.
  Child(const std::vector<std::string>& argv, const std::string& log_path);
  ~Child();
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  // Sends `sig` and waits for exit; returns the exit status as from waitpid.
  int SignalAndWait(int sig);
  bool running();

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// Waits up to `timeout_ms` for a non-empty file and returns its first line
// ("" on timeout).
std::string WaitForFile(const std::string& path, int timeout_ms);

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
};

// Runs a shell command line and captures stdout.
CommandResult RunCommand(const std::string& command);

// Threads of `pid` that are io_uring workers (io-wq: "iou-wrk-N"). The ring
// hands every fdatasync to one, so a tally-server writing through io_uring
// has at least one for a few seconds after its last sync; one writing with
// the sync engine never starts any.
int IoUringWorkers(int64_t pid);

// A fresh directory under /tmp, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace tally::testing
