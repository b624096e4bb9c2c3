#pragma once

// Bringing a node (back) into the layout: healing (docs/layout.md,
// "Bringing a node back"). Used by `tallyctl node add` and by the failure
// detector when a removed node answers again.
//
// The sequence, each step safe to repeat or abandon:
//   1. catch up while writes go on in the current epoch e: for every chain
//      of the last segment that gains the node, copy [segment start, the
//      chain tail's local tail) from that tail (one thread per chain);
//   2. seal epoch e + 1 on every unit of the new layout (the node too), so
//      no write of epoch e lands after this;
//   3. copy the delta the chains acknowledged between steps 1 and 2;
//   4. agree on the layout with the node at the tail of its chains (Paxos).
// If step 3 fails the cluster must not stay sealed without a layout, so the
// current layout is committed at e + 1 instead (the node stays out).
//
// Divergence: a node that returns may hold entries the chain never
// acknowledged (it was a head and crashed mid-write, and the address was
// reissued). State transfer never overwrites; with `wipe_divergent` the node
// is wiped (log.reset) and caught up from scratch, which is safe only
// because it is in no chain of the current layout (checked here).

#include <chrono>
#include <functional>
#include <string>

#include "tally/base/env.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/base/threads.h"
#include "tally/client/state_transfer.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"

namespace tally::client {

struct AddNodeOptions {
  std::chrono::milliseconds rpc_timeout{5000};
  // Per RPC of the seal, of the delta copy after it, and of the Paxos steps
  // (0: rpc_timeout). Writes wait from the seal to the commit; sealing
  // retries a unit that does not answer until seal_deadline and the copy
  // retries a lost message, so a short timeout keeps one lost message from
  // costing a whole rpc_timeout while writes wait.
  std::chrono::milliseconds reconfigure_rpc_timeout{0};
  std::chrono::milliseconds seal_deadline{5000};
  // The proposer's id in Paxos ranks (distinct per would-be decision maker).
  NodeId proposer{1};
  // Wipe the node (log.reset) and start over when it holds data the chains
  // do not; otherwise fail with FailedPrecondition and leave it alone.
  bool wipe_divergent = false;
  // Per-chain copy settings (stripes/stripe are set per chain).
  CopyOptions copy;
  // Progress of one chain's copy: `stripe`, `phase` ("catch-up" or "delta"),
  // the chain's source unit, its totals so far and whether it is done. Called
  // from the copying threads (one per chain), so it must be thread-safe.
  std::function<void(int stripe, const char* phase, const std::string& source,
                     const TransferStats& stats, bool done)>
      progress;
  Threads* threads = nullptr;  // nullptr: SystemThreads()
  Clock* clock = nullptr;      // nullptr: the real clock
};

struct AddNodeResult {
  proto::Layout committed;       // the layout with the node
  TransferStats copied;          // totals over every chain and both copies
  bool wiped = false;            // the node held divergent data and was wiped
  uint64_t dropped_entries = 0;  // what the wipe dropped
};

// Adds `endpoint` to the layout after `current` (the newest committed one).
// Blocks. Errors: NotFound (nothing to add: the node is in every chain it
// could join and a sequencer), FailedPrecondition (divergent data without
// wipe_divergent; another reconfiguration won the epoch), WrongEpoch (a
// newer epoch was sealed or committed meanwhile: start again from the
// newest layout), Unavailable and the other errors of the copy, the seal
// and Paxos, naming the unit.
Result<AddNodeResult> AddNode(net::Transport& transport, const proto::Layout& current,
                              const std::string& endpoint, const AddNodeOptions& options = {});

// True when `endpoint` is a log unit of some chain of `layout`.
bool InAnyChain(const proto::Layout& layout, const std::string& endpoint);

}  // namespace tally::client
