#pragma once

// Changing the layout: the epoch-change protocol (docs/layout.md,
// "Reconfiguration"). A new layout for epoch e + 1 takes effect in three
// steps, each safe to repeat:
//   1. seal: every log unit of the new layout is sealed at e + 1, so no
//      write of epoch e or older is acknowledged by them any more (a write
//      in flight either completed on its whole chain before the seal, or
//      fails there with WRONG_EPOCH and its writer retries in e + 1);
//   2. agree: the new layout is proposed to the layout servers (Paxos);
//   3. the primary sequencer of the new layout notices the committed epoch
//      and rebuilds itself from the sealed log units (server/, sequencer
//      role), so no address of e is reissued in e + 1 unless its entry
//      never reached a sealed unit.
// Pure layout edits (LayoutWithout, LayoutWith) are separate from the I/O
// (Reconfigure = SealUnits + CommitLayout; healing runs its last state
// transfer between the two).

#include <chrono>
#include <map>
#include <string>

#include "tally/base/env.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/base/threads.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"
#include "tally/proto/logunit.pb.h"

namespace tally::client {

// The layout of the next epoch without node `endpoint`: removed from every
// chain and from the sequencer list (if it was the primary sequencer, the
// next listed standby becomes primary). Pure. Errors: NotFound (the layout
// does not name it), FailedPrecondition (a chain would become empty, or no
// sequencer would remain: the cluster cannot go on without the node).
Result<proto::Layout> LayoutWithout(const proto::Layout& current, const std::string& endpoint);

// The layout of the next epoch with node `endpoint` brought back (healing):
// appended at the tail of every chain of the last segment that lacks it and
// is shorter than the replication target (3, or the number of nodes if
// fewer), and to the sequencer list as a standby if absent; listed in
// `nodes` (with the next free id) if it was not. Older segments are left
// alone. Pure. Errors: NotFound (nothing would change: the node is in every
// chain it could join and in the sequencer list), InvalidArgument (empty
// endpoint, no segment).
Result<proto::Layout> LayoutWith(const proto::Layout& current, const std::string& endpoint);

struct ReconfigureOptions {
  std::chrono::milliseconds rpc_timeout{2000};
  // How long sealing retries units that do not answer.
  std::chrono::milliseconds seal_deadline{5000};
  // The proposer's id in Paxos ranks (distinct per would-be decision maker).
  NodeId proposer{1};
  Threads* threads = nullptr;  // nullptr: SystemThreads()
  Clock* clock = nullptr;      // nullptr: the real clock
};

// Seals every log unit of `next` at next.epoch() and commits `next` by Paxos
// among next.layout_servers(). Returns the layout committed for that epoch:
// `next`, or another decision maker's layout if it won the epoch (compare).
// Blocks through options.threads. Errors: InvalidArgument (next is not a
// valid layout, or names no layout servers), Unavailable (a unit of `next`
// cannot be sealed, or no layout server majority), WrongEpoch (a later
// epoch is already committed: start again from the newest layout).
Result<proto::Layout> Reconfigure(net::Transport& transport, const proto::Layout& next,
                                  const ReconfigureOptions& options = {});

// Step 1 alone: seals every log unit of `next` at next.epoch() (retrying
// until options.seal_deadline) and returns each unit's answer (its sealed
// epoch, above next.epoch() if a later epoch got there first, and its local
// tail: every write of an older epoch it acknowledged lies below it).
// Errors: InvalidArgument (next is not a valid layout), Unavailable and the
// other errors of log.seal, naming the unit.
Result<std::map<std::string, proto::SealResponse>> SealUnits(
    net::Transport& transport, const proto::Layout& next, const ReconfigureOptions& options = {});

// Step 2 alone: commits `next` by Paxos among next.layout_servers(); the
// units of `next` must have been sealed (SealUnits). Returns and errors as
// Reconfigure.
Result<proto::Layout> CommitLayout(net::Transport& transport, const proto::Layout& next,
                                   const ReconfigureOptions& options = {});

// The newest committed layout among `layout_servers` (any answering server
// suffices for a committed one; the highest epoch wins). Blocks.
Result<proto::Layout> FetchNewestLayout(net::Transport& transport,
                                        const std::vector<std::string>& layout_servers,
                                        std::chrono::milliseconds rpc_timeout,
                                        Threads* threads = nullptr);

}  // namespace tally::client
