#pragma once

// Gathering a sequencer's bootstrap state from the log units of a layout:
// the global tail (highest address held + 1) and, per stream, the union of
// the units' address maps. Acknowledged writes are on every replica of their
// chain, so one answering replica per stripe of every segment suffices.

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/base/threads.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"
#include "tally/proto/logunit.pb.h"
#include "tally/sequencer/sequencer.h"

namespace tally::server {

// What one log unit answered: log.tail's local tail and log.stream_maps.
struct UnitView {
  uint64_t local_tail = 0;
  std::vector<proto::StreamMap> maps;
  uint64_t trim_mark = 0;  // everything below is trimmed there
};

// The input of Sequencer::Bootstrap.
struct BootstrapState {
  Address global_tail{0};
  std::vector<sequencer::StreamSnapshot> streams;  // one per stream, maps merged
  size_t units = 0;                                // log units that contributed
};

// Pure: merges the views (the global tail is the highest local tail or trim
// mark, so a tail never falls below a trim) of the units that answered (endpoint -> view).
// Errors: Unavailable naming the first stripe none of whose replicas
// answered (with its chain); Malformed when a unit's map does not parse.
Result<BootstrapState> MergeUnitViews(const proto::Layout& layout,
                                      const std::map<std::string, UnitView>& answered);

// Asks every log unit of `layout` for log.tail and log.stream_maps in the
// layout's epoch, all at once, and waits for every answer or `timeout`.
// Returns the views of the units that answered both; the others land in
// `failures` (endpoint -> error). Blocks through `threads`: never call on a
// transport thread.
std::map<std::string, UnitView> QueryLogUnits(const proto::Layout& layout,
                                              net::Transport* transport,
                                              std::chrono::milliseconds timeout,
                                              std::map<std::string, Status>* failures,
                                              Threads& threads = *SystemThreads());

}  // namespace tally::server
