#pragma once

// tallyctl's commands on the shared log as a whole (through the client
// runtime: sequencer tokens, chain replication, reads from chain tails):
// append, read, scan, tail, stream read|follow, layout, trim.

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ctl.h"

namespace tally::ctl {

class ClusterCommands {
 public:
  // Adds the subcommands to `app`. `g` must outlive this object.
  ClusterCommands(CLI::App& app, const Globals& g);

  // Runs the parsed subcommand: its exit code, or nullopt when none of
  // these subcommands was chosen.
  std::optional<int> Run();

 private:
  int Append();
  int Read();
  int Scan();
  int Tail();
  int StreamRead(bool follow);
  int Layout();
  int Trim();

  const Globals& g_;
  CLI::App* append_ = nullptr;
  CLI::App* read_ = nullptr;
  CLI::App* scan_ = nullptr;
  CLI::App* tail_ = nullptr;
  CLI::App* stream_read_ = nullptr;
  CLI::App* stream_follow_ = nullptr;
  CLI::App* layout_ = nullptr;
  CLI::App* trim_ = nullptr;

  std::vector<std::string> streams_;
  std::string data_;
  std::string stream_;
  uint64_t address_ = 0;
  uint64_t to_ = 0;
  uint64_t from_ = 0;
  uint64_t follow_limit_ = 0;
};

}  // namespace tally::ctl
