#pragma once

// The client runtime of the shared log: tokens from the sequencer, chain
// replication to the log units, reads from the chain tails with chain
// completion and hole filling, and stream tails. Protocol:
// docs/protocol.md.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tally/base/env.h"
#include "tally/base/ids.h"
#include "tally/base/result.h"
#include "tally/base/threads.h"
#include "tally/client/layout.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"
#include "tally/proto/log_entry.pb.h"

namespace tally::client {

struct ClientOptions {
  // Not owned; must outlive the client.
  net::Transport* transport = nullptr;
  // Where to start: a layout, or (when `layout` has no sequencer) endpoints
  // asked for theirs with layout.get, in turn.
  proto::Layout layout;
  std::vector<std::string> endpoints;
  // Deadline of one RPC.
  std::chrono::milliseconds rpc_timeout{2000};
  // How long a reader waits on an issued but unwritten address before it
  // fills a hole there.
  std::chrono::milliseconds hole_fill_timeout{200};
  // How long an operation retries transient errors (TIMEOUT, UNAVAILABLE,
  // OVERLOADED, sequencer not bootstrapped, stale epochs) before failing.
  std::chrono::milliseconds retry_deadline{10000};
  // Tokens per seq.next at most (appends batched together).
  size_t max_batch = 256;
  // New tokens an append takes after losing its token to a hole filler.
  int max_append_attempts = 8;
  // Threads that drain the append queue (each runs one batch at a time).
  int append_threads = 2;
  // Batch spacing under concurrent load. When a batch cut took every
  // queued append and other batches are still on their way, the next cut
  // waits until batch_spacing x (batch time / append_threads) after it, so
  // appends arriving meanwhile join one batch; the batch time is the
  // median of the last 16 (a few slowed by a stall do not stretch it).
  // Without it, a thread that frees up cuts whatever few appends arrived
  // since the last cut: the threads fall into step, cutting tiny batches
  // back to back, then leave every newcomer queued until one of them is
  // free again (measured
  // at 100,000 appends/s with 4 threads: cut-to-cut gaps p50 0.28 ms, p99
  // 2.5 ms). Never applies with no batch in flight (a lone caller, a lull)
  // or one append thread; appends a cut leaves queued (other stream sets,
  // beyond max_batch) are cut at once. Between 0 (cut as soon as a thread
  // is free) and 1 (cuts evenly spread over a batch time); values outside
  // are clamped. With the 2 default threads, 1 gave a lower p99 than 0.75
  // at 100,000 appends/s in 3 of 4 pairs and slightly less CPU per append
  // (bench/README.md, session 13, when the batch time was an average).
  double batch_spacing = 1.0;
  // Written into every entry's metadata.
  std::string principal;
  // Clock and randomness (nullptr members: DefaultEnv()). Not owned.
  Env env{};
  // How the client starts its append threads, waits for answers and pauses
  // retry loops (nullptr: SystemThreads()). A simulation plugs in
  // net::SimThreads to run the client on virtual time. Not owned.
  Threads* threads = nullptr;
};

// Counters since the client was created.
struct ClientStats {
  uint64_t appends = 0;           // appends acknowledged
  uint64_t sequencer_calls = 0;   // seq.next calls (fewer than appends when batching)
  uint64_t tokens = 0;            // tokens taken (including retries)
  uint64_t lost_races = 0;        // tokens lost to a hole filler at the head
  uint64_t holes_filled = 0;      // by this client's reads
  uint64_t chains_completed = 0;  // half-written chains this client's reads completed
  uint64_t layout_refreshes = 0;  // newer layouts adopted
};

using AppendCallback = std::function<void(Result<Address>)>;

// What Client::Trim did: the mark asked for and, per log unit of the layout
// (first-seen order), the unit's trim mark after the call (above `mark` when
// the unit had been trimmed further before).
struct TrimResult {
  struct Unit {
    std::string endpoint;
    Address trim_mark;
  };
  Address mark;
  std::vector<Unit> units;
};

// Thread-safe: every method may be called from any thread except a
// transport thread and an AppendAsync callback (blocking methods would wait
// for themselves there).
class Client {
 public:
  // Validates the layout (or fetches one with layout.get) and starts the
  // append threads. Errors: InvalidArgument (no transport, bad layout or
  // neither layout nor endpoints), Unavailable (no endpoint answered
  // layout.get, with each one's error).
  static Result<std::unique_ptr<Client>> Create(ClientOptions options);

  // Fails appends still queued with Cancelled and joins the append threads.
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Appends `payload` to the log and to every stream in `streams` (at most
  // 1024, distinct). Returns the entry's address once every replica of its
  // chain holds it. Concurrent appends with equal stream sets share one
  // seq.next and one log.write_batch per chain unit. A token lost to a hole
  // filler is replaced transparently, up to max_append_attempts times.
  // Errors: InvalidArgument (streams), AlreadyWritten (attempts exhausted),
  // Timeout/Unavailable/Overloaded after retry_deadline (retryable: the
  // entry may or may not be in the log), Internal (replicas disagree),
  // Trimmed, TooLarge, Cancelled (client destroyed).
  Result<Address> Append(std::string payload, std::vector<StreamId> streams = {});

  // As Append; `done` runs once, on an append thread (or inline, for
  // invalid arguments and after destruction began). It must not block on
  // this client.
  void AppendAsync(std::string payload, std::vector<StreamId> streams, AppendCallback done);

  // The entry at `address`, read from its chain's tail (type HOLE for a
  // hole). Completes a chain that only its first units hold; fills a hole at
  // an address issued but left unwritten for hole_fill_timeout.
  // Errors: Unwritten (at or above the global tail: nothing was issued
  // there), Trimmed (below the trim mark, which the message names; never
  // completed or hole-filled), Corruption, Internal (replicas disagree),
  // transient errors after retry_deadline.
  Result<proto::LogEntry> Read(Address address);

  // Entries of [from, min(to, global tail)), ascending, holes included as
  // HOLE entries. A range reaching below the trim mark fails as a whole
  // with Trimmed naming the mark (it is not silently shortened): read from
  // the mark on. Errors: InvalidArgument (to < from), as Read.
  Result<std::vector<proto::LogEntry>> ReadRange(Address from, Address to);

  // Prefix trim: sends log.trim(mark) at the layout's epoch to every
  // distinct log unit of the layout, so that every address below `mark`
  // answers Trimmed and the units delete their segment files that lie
  // wholly below it. Irreversible. Transient errors are retried until
  // retry_deadline; a stale epoch refreshes the layout and trims again.
  // `mark` 0 trims nothing and reports each unit's current mark.
  // OK only when every unit trimmed. Errors: InvalidArgument (mark at or
  // above the global tail: it would trim addresses never issued), else the
  // first failing unit's code with every failing unit named; units that
  // answered are trimmed, and repeating the call is safe (a unit's mark
  // never goes down).
  Result<TrimResult> Trim(Address mark);

  // The global tail: every address below it was issued. Issues nothing.
  Result<Address> Tail();

  // The last address issued to `stream`, kNoAddress when none.
  Result<Address> StreamTail(StreamId stream);

  // The addresses issued to `stream` in [from, to) (to == kNoAddress: no
  // bound), ascending, from the sequencer's stream map.
  Result<std::vector<Address>> StreamAddresses(StreamId stream, Address from,
                                               Address to = kNoAddress);

  // The layout in use (replaced when a newer epoch is learned).
  std::shared_ptr<const Layout> layout() const;

  ClientStats stats() const;

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tally::client
