#pragma once

// What the clients of a simulated run did and saw, and the invariants it
// must satisfy (docs/simulation.md). Pure: fed by the harness, checked at
// the end, unit-tested on fabricated histories (history_test.cc).
//
// Invariants (DESIGN.md 1, 4 and "no acknowledged write lost"):
//  - one total order: no address is acknowledged to two appends;
//  - at most once: no payload is found at two addresses;
//  - write-once / same view: every read of an address, by any client at any
//    time, saw the same entry (same payload and streams) or the same hole;
//  - no acknowledged append lost: every acknowledged address finally holds
//    that append's payload, and was never read as anything else;
//  - replicas agree: every replica of a chain that holds an address holds
//    the same entry there;
//  - errors are honest: an operation fails only with the codes its contract
//    names for the faults injected;
//  - epochs only grow: no observer (a client's layout, a layout server's
//    latest committed epoch, a log unit's seal) ever goes back to an older
//    epoch, across crashes and restarts included;
//  - every committed layout was agreed: all reports of an epoch's committed
//    layout are the same layout;
//  - every running epoch was committed: a layout a client runs is the
//    committed layout of its epoch (epoch 0: the bootstrap layout), and no
//    unit is sealed beyond the epoch after the newest committed one (a seal
//    only ever prepares the next epoch).

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tally/base/status.h"
#include "tally/proto/log_entry.pb.h"

namespace tally::sim {

// What a read saw at one address, reduced to what every reader must agree
// on (log units stamp their own epoch, so it is left out).
struct Seen {
  bool hole = false;
  std::string payload;
  std::vector<std::pair<uint64_t, uint64_t>> streams;

  static Seen Of(const proto::LogEntry& e);
  bool operator==(const Seen&) const = default;
  std::string ToString() const;
};

class History {
 public:
  // Disk faults are injected: IO_ERROR is an honest answer of a unit whose
  // sync failed (it refuses writes until restarted).
  void AllowIoErrors() { io_errors_allowed_ = true; }

  // An append returned `address` for `payload` (payloads are unique).
  void Acked(const std::string& payload, uint64_t address);
  // An append failed with `st`.
  void AppendFailed(const std::string& payload, const Status& st);
  // A client read of `address` returned an entry (data or hole).
  void Read(const std::string& who, uint64_t address, const proto::LogEntry& entry);
  // A client read failed with `st`.
  void ReadFailed(const std::string& who, uint64_t address, const Status& st);
  // Replica `unit` holds `entry` at `address` (final inspection).
  void Replica(const std::string& unit, uint64_t address, const proto::LogEntry& entry);
  // Replica `unit`, a member of the chain of `address`, does not hold it
  // (or failed to answer with `st`) after the final pass settled it.
  void ReplicaMissing(const std::string& unit, uint64_t address, const Status& st);

  // Epochs and layouts. Layouts are compared as serialized bytes.
  // Layout server (or the bootstrap, for epoch 0) `who` holds `layout` as
  // the committed layout of `epoch`.
  void LayoutCommitted(const std::string& who, uint64_t epoch, const std::string& layout);
  // Client `who` runs `layout` of `epoch` (each sample of its layout).
  void LayoutAdopted(const std::string& who, uint64_t epoch, const std::string& layout);
  // Observer `who` is at `epoch` now (e.g. a layout server's latest
  // committed epoch): it must never be below an earlier observation.
  void EpochObserved(const std::string& who, uint64_t epoch);
  // Log unit `unit` is sealed at `epoch` (an observation, as above).
  void Sealed(const std::string& unit, uint64_t epoch);

  // Checks every invariant; one line per violation (empty: all hold).
  // `final_tail`: the global tail after the run; every address below it must
  // have been read by the final checker (a read per address).
  std::vector<std::string> Check(uint64_t final_tail) const;

  size_t acked() const { return acked_.size(); }
  size_t append_failures() const { return append_failures_; }
  size_t reads() const { return reads_; }
  // Epoch observations recorded (changes only) and the highest committed
  // epoch reported.
  size_t epoch_observations() const { return epoch_observations_; }
  uint64_t newest_committed_epoch() const;
  size_t holes() const;
  // Error code name -> count, over appends and reads (for reports).
  const std::map<std::string, int>& error_counts() const { return errors_; }

 private:
  std::map<uint64_t, std::string> acked_;  // address -> payload
  std::vector<std::string> early_violations_;
  std::map<uint64_t, Seen> first_seen_;        // address -> first read
  std::map<uint64_t, std::string> first_who_;  // address -> who read it first
  std::map<std::string, std::map<uint64_t, Seen>> replicas_;
  std::map<std::string, int> errors_;
  std::map<std::string, uint64_t> last_epoch_;  // observer -> last epoch seen
  std::map<uint64_t, std::pair<std::string, std::string>> committed_;  // epoch -> (layout, who)
  std::map<std::string, std::pair<uint64_t, std::string>> adopted_;    // client -> (epoch, layout)
  std::map<std::pair<uint64_t, std::string>, std::string> runs_;  // (epoch, layout) -> first client
  std::map<std::string, uint64_t> sealed_;                        // unit -> highest sealed epoch
  size_t epoch_observations_ = 0;
  bool io_errors_allowed_ = false;
  size_t append_failures_ = 0;
  size_t reads_ = 0;
};

}  // namespace tally::sim
