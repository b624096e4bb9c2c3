#pragma once

// The layout server: the acceptor of single-decree Paxos, one instance per
// epoch, deciding which Layout holds in that epoch (methods "layout.*",
// proto/tally/proto/layout.proto, docs/layout.md). The proposer side is
// layout_proposer.h.
//
// Per epoch it keeps the highest promised rank and the accepted (rank,
// layout); it also keeps every committed layout by epoch. Every change is
// written to RocksDB with sync before the answer, so a restart (Open on
// the same directory) forgets no promise, acceptance or commit.
//
// Fencing: once epoch E is committed, prepares and proposals for epochs
// below E are refused with WRONG_EPOCH carrying E. For E itself, a prepare
// is answered with the committed layout (committed = true) and a proposal
// of that same layout is accepted (idempotent); a different one is refused
// with WRONG_EPOCH.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "tally/base/result.h"
#include "tally/net/transport.h"
#include "tally/proto/layout.pb.h"

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace tally::log {

struct LayoutServerOptions {
  // RocksDB directory (created, with missing parents, if absent). Not shared
  // with another RocksDB instance.
  std::string dir;
  // nullptr: rocksdb::Env::Default(). Tests pass rocksdb::NewMemEnv(...);
  // it must outlive the server.
  rocksdb::Env* env = nullptr;
  // Threads that run the handlers (each does a synced RocksDB write). 0: no
  // pool; handlers run and answer on the calling thread (the simulation).
  uint32_t io_threads = 1;
};

class LayoutServer {
 public:
  // Opens (or creates) the state at options.dir and loads it.
  // Errors: IO_ERROR, CORRUPTION (a stored record that does not parse, or a
  // format this build does not read), INVALID_ARGUMENT (empty dir).
  static Result<std::unique_ptr<LayoutServer>> Open(LayoutServerOptions options);
  // Waits for handlers running on the pool; the registry must not be used
  // afterwards.
  ~LayoutServer();

  LayoutServer(const LayoutServer&) = delete;
  LayoutServer& operator=(const LayoutServer&) = delete;

  // Registers layout.prepare, layout.propose, layout.commit and
  // layout.committed. `registry` must not outlive this server.
  void Register(net::ServiceRegistry& registry);

  // The rules, callable without a transport. All are thread-safe (one mutex;
  // the synced write happens under it) and return once the change is
  // durable.
  //
  // Phase 1. Promises `rank` for `epoch` if it is at least the promised
  // rank; answers promised = false with the promised rank otherwise.
  // Errors: INVALID_ARGUMENT (rank missing or round 0), WRONG_EPOCH (epoch
  // below the latest committed), IO_ERROR.
  Result<proto::LayoutPrepareResponse> Prepare(const proto::LayoutPrepareRequest& req);
  // Phase 2. Accepts (rank, layout) for `epoch` if rank is at least the
  // promised rank; answers accepted = false with the promised rank
  // otherwise. Errors: INVALID_ARGUMENT (rank, layout missing, layout.epoch
  // != epoch, no sequencer or segment), WRONG_EPOCH (below the latest
  // committed epoch, or that epoch with a different layout), IO_ERROR.
  Result<proto::LayoutProposeResponse> Propose(const proto::LayoutProposeRequest& req);
  // Records layout as committed for layout.epoch; it becomes the latest if
  // its epoch is the highest committed. Idempotent. Errors: INVALID_ARGUMENT
  // (layout missing or empty), FAILED_PRECONDITION (that epoch is committed
  // with a different layout: a Paxos invariant broke), IO_ERROR.
  Result<proto::LayoutCommitResponse> Commit(const proto::LayoutCommitRequest& req);
  // The committed layout of req.epoch, or of the latest epoch when 0.
  // Errors: NOT_FOUND (nothing committed for it here).
  Result<proto::LayoutCommittedResponse> Committed(const proto::LayoutCommittedRequest& req);

  // Highest committed epoch here, if any.
  std::optional<uint64_t> latest_committed_epoch() const;

  struct Impl;

 private:
  explicit LayoutServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tally::log
