#pragma once

// `tallyctl unit ...`: commands to one log unit, addressed directly
// (--endpoints: the first endpoint is used). For operators and debugging:
// they bypass the sequencer and chain replication.

#include <CLI/CLI.hpp>
#include <optional>
#include <string>
#include <vector>

#include "ctl.h"

namespace tally::ctl {

class UnitCommands {
 public:
  // Adds `unit` and its subcommands to `app`. `g` must outlive this object.
  UnitCommands(CLI::App& app, const Globals& g);

  // The chosen subcommand's exit code, or nullopt if `unit` was not chosen.
  std::optional<int> Run();

 private:
  const Globals& g_;
  CLI::App* unit_ = nullptr;
  CLI::App* write_ = nullptr;
  CLI::App* read_ = nullptr;
  CLI::App* scan_ = nullptr;
  CLI::App* tail_ = nullptr;
  CLI::App* stats_ = nullptr;
  CLI::App* seal_ = nullptr;
  CLI::App* trim_ = nullptr;
  CLI::App* hole_ = nullptr;
  CLI::App* reset_ = nullptr;

  uint64_t address_ = 0;
  uint64_t to_ = 0;
  uint64_t epoch_ = 0;
  std::string data_;
  std::vector<std::string> streams_;
  bool yes_ = false;
};

}  // namespace tally::ctl
