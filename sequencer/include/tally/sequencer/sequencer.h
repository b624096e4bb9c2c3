#pragma once

// The sequencer core: the token service of the shared log, as plain code over
// values (no sockets, no threads of its own). SequencerService
// (sequencer_service.h) puts it on the wire as "seq.*".
//
// State is soft: a global tail and, per stream, its tail and the map of its
// addresses. It is rebuilt by Bootstrap in every new epoch from the log
// units' stream indexes. Contract and rationale: docs/sequencer.md.

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "tally/base/address_map.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/base/status.h"

namespace tally::sequencer {

// Tokens one Next may issue.
inline constexpr uint32_t kMaxTokensPerGrant = 65536;
// Streams one Next or Tail may name.
inline constexpr size_t kMaxStreamsPerRequest = 1024;

// A stream's last issued address; kNoAddress when it has none yet.
struct StreamTail {
  StreamId stream;
  Address tail = kNoAddress;
  bool operator==(const StreamTail&) const = default;
};

// The answer to Next: the tokens [first, first + count).
struct Grant {
  Address first;
  uint32_t count = 0;
  // One per requested stream, in request order: the stream's tail before the
  // grant. Token first + k (k > 0) has backpointer first + k - 1 in every
  // requested stream.
  std::vector<StreamTail> previous;
};

// The answer to Tail.
struct Tails {
  Address global_tail;              // the next address to be issued
  std::vector<StreamTail> streams;  // one per requested stream, in order
};

// One stream's addresses as handed to Bootstrap: a serialized CRoaring
// Roaring64Map in portable format (what log.stream_addresses returns).
struct StreamSnapshot {
  StreamId stream;
  std::string roaring64;
};

struct SequencerStats {
  bool bootstrapped = false;
  Epoch epoch;
  Address global_tail;
  uint64_t streams = 0;        // streams with at least one address
  uint64_t map_bytes = 0;      // serialized size of every stream map (memory proxy)
  uint64_t tokens_issued = 0;  // since the last bootstrap
};

// Thread-safe: every method may be called from any thread. One mutex guards
// the state; no call blocks on anything but that mutex, and none does I/O,
// so it is safe to call from a transport thread.
class Sequencer {
 public:
  Sequencer();
  ~Sequencer();
  Sequencer(const Sequencer&) = delete;
  Sequencer& operator=(const Sequencer&) = delete;

  // Adopts `epoch` and rebuilds the state from the log units' view:
  // `global_tail` (highest address held + 1) and one map per stream. Replaces
  // every stream map; the global tail adopted is the largest of
  // `global_tail`, every map's highest address + 1, and this sequencer's
  // previous tail, so no address this process issued is issued again.
  // Returns the adopted global tail.
  // Errors (state unchanged): WrongEpoch with the current epoch when already
  // bootstrapped and `epoch` is not newer; InvalidArgument for a stream
  // listed twice; Malformed for a map that does not parse.
  Result<Address> Bootstrap(Epoch epoch, Address global_tail, std::vector<StreamSnapshot> streams);

  // Issues `count` contiguous tokens, never issued before by this sequencer,
  // and records them in the map of every stream in `streams` (every token of
  // the grant belongs to all of them).
  // Errors: InvalidArgument (count not in [1, kMaxTokensPerGrant], too many
  // or duplicate streams); Unavailable (retryable) before the first
  // Bootstrap; FailedPrecondition when the address space is exhausted;
  // WrongEpoch with the current epoch
  // when `epoch` differs from the sequencer's.
  Result<Grant> Next(Epoch epoch, uint32_t count, std::span<const StreamId> streams);

  // The global tail and the tails of `streams`. Issues nothing.
  // Errors: as Next (no count check).
  Result<Tails> Tail(Epoch epoch, std::span<const StreamId> streams) const;

  // The addresses of `stream` in [from, to), as a serialized portable
  // Roaring64Map (decode with DecodeAddresses or CRoaring). `to` ==
  // kNoAddress means no upper bound. An unknown stream has no addresses.
  // Errors: InvalidArgument (from > to); Unavailable, WrongEpoch as Next.
  Result<std::string> StreamAddresses(Epoch epoch, StreamId stream, Address from, Address to) const;

  // A snapshot of counters, for status pages and benchmarks. Costs time
  // linear in the number of streams.
  SequencerStats Stats() const;

  struct State;

 private:
  // Checks bootstrap and epoch; requires mu_ held.
  Status CheckEpochLocked(Epoch epoch) const;

  mutable std::mutex mu_;
  std::unique_ptr<State> state_;  // GUARDED_BY(mu_)
};

// EncodeAddresses / DecodeAddresses (tally/base/address_map.h) read and
// write the map format of StreamSnapshot and StreamAddresses.
using ::tally::DecodeAddresses;
using ::tally::EncodeAddresses;

}  // namespace tally::sequencer
