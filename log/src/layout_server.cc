#include "tally/log/layout_server.h"

#include <fmt/format.h>
#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/write_batch.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstring>
#include <map>
#include <mutex>
#include <string_view>

#include "layout_rules.h"
#include "tally/net/typed.h"

namespace tally::log {

namespace asio = boost::asio;

namespace {

// RocksDB keys (docs/layout.md). Epochs are 20 decimal digits so that keys
// sort by epoch.
constexpr std::string_view kFormatKey = "meta/format";
constexpr std::string_view kStatePrefix = "paxos/";
constexpr std::string_view kCommittedPrefix = "committed/";
constexpr uint64_t kFormat = 1;

std::string StateKey(uint64_t epoch) { return fmt::format("paxos/{:020}", epoch); }
std::string CommittedKey(uint64_t epoch) { return fmt::format("committed/{:020}", epoch); }

Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return Status::OK();
  if (s.IsCorruption()) return Corruption(fmt::format("layout server {}: {}", what, s.ToString()));
  return IoError(fmt::format("layout server {}: {}", what, s.ToString()));
}

// The epoch in a key "<prefix><20 digits>", or nullopt.
std::optional<uint64_t> KeyEpoch(std::string_view key, std::string_view prefix) {
  std::string_view digits = key.substr(prefix.size());
  if (digits.size() != 20) return std::nullopt;
  uint64_t v = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

Status CreateDirs(rocksdb::Env* env, const std::string& dir) {
  for (size_t pos = dir.find('/', 1); pos != std::string::npos; pos = dir.find('/', pos + 1)) {
    TALLY_RETURN_IF_ERROR(FromRocks(env->CreateDirIfMissing(dir.substr(0, pos)), "mkdir " + dir));
  }
  return FromRocks(env->CreateDirIfMissing(dir), "mkdir " + dir);
}

}  // namespace

struct LayoutServer::Impl {
  LayoutServerOptions options;
  std::unique_ptr<rocksdb::DB> db;
  std::unique_ptr<asio::thread_pool> pool;  // null when options.io_threads == 0

  mutable std::mutex mu;
  // Paxos state of epochs above the latest committed one (older epochs are
  // fenced, so their state is dropped at commit).
  std::map<uint64_t, proto::LayoutAcceptorState> states;  // GUARDED_BY(mu)
  std::map<uint64_t, proto::Layout> committed;            // GUARDED_BY(mu)

  ~Impl() {
    if (db != nullptr) (void)db->Close();
  }

  std::optional<uint64_t> LatestLocked() const {
    if (committed.empty()) return std::nullopt;
    return committed.rbegin()->first;
  }

  // WRONG_EPOCH for an epoch below the latest committed one.
  Status Superseded(uint64_t epoch, uint64_t latest) const {
    return WrongEpoch(
               fmt::format("layout epoch {} is superseded: epoch {} is committed on this layout "
                           "server; fetch the committed layout (layout.committed) and retry",
                           epoch, latest))
        .WithCurrentEpoch(latest);
  }

  Status WriteSynced(rocksdb::WriteBatch* batch, std::string_view what) {
    rocksdb::WriteOptions wo;
    wo.sync = true;  // durable before the answer
    return FromRocks(db->Write(wo, batch), what);
  }

  // Stores `state` for `epoch`, synced, then publishes it.
  Status PutState(uint64_t epoch, proto::LayoutAcceptorState state) {
    rocksdb::WriteBatch batch;
    batch.Put(StateKey(epoch), state.SerializeAsString());
    TALLY_RETURN_IF_ERROR(WriteSynced(&batch, "write " + StateKey(epoch)));
    states[epoch] = std::move(state);
    return Status::OK();
  }

  Status Load() {
    std::string format;
    rocksdb::Status s = db->Get(rocksdb::ReadOptions(), kFormatKey, &format);
    if (s.IsNotFound()) {
      rocksdb::WriteBatch batch;
      batch.Put(kFormatKey, std::to_string(kFormat));
      TALLY_RETURN_IF_ERROR(WriteSynced(&batch, "write format"));
    } else {
      TALLY_RETURN_IF_ERROR(FromRocks(s, "read format"));
      if (format != std::to_string(kFormat)) {
        return Corruption(
            fmt::format("layout server state at {} has format '{}', this build "
                        "reads format {}",
                        options.dir, format, kFormat));
      }
    }
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions()));
    for (it->Seek(kCommittedPrefix); it->Valid() && it->key().starts_with(kCommittedPrefix);
         it->Next()) {
      std::optional<uint64_t> epoch = KeyEpoch(it->key().ToStringView(), kCommittedPrefix);
      proto::Layout layout;
      if (!epoch ||
          !layout.ParseFromArray(it->value().data(), static_cast<int>(it->value().size())) ||
          layout.epoch() != *epoch) {
        return Corruption(fmt::format("layout server at {}: record {} is damaged", options.dir,
                                      it->key().ToString()));
      }
      committed[*epoch] = std::move(layout);
    }
    TALLY_RETURN_IF_ERROR(FromRocks(it->status(), "scan committed layouts"));
    for (it->Seek(kStatePrefix); it->Valid() && it->key().starts_with(kStatePrefix); it->Next()) {
      std::optional<uint64_t> epoch = KeyEpoch(it->key().ToStringView(), kStatePrefix);
      proto::LayoutAcceptorState state;
      if (!epoch ||
          !state.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return Corruption(fmt::format("layout server at {}: record {} is damaged", options.dir,
                                      it->key().ToString()));
      }
      states[*epoch] = std::move(state);
    }
    return FromRocks(it->status(), "scan Paxos state");
  }

  // Runs `fn` on the pool (each call does a synced write), or here and now
  // without one.
  template <typename Fn>
  void Offload(Fn fn) {
    if (pool == nullptr) {
      fn();
      return;
    }
    asio::post(*pool, std::move(fn));
  }
};

LayoutServer::LayoutServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LayoutServer::~LayoutServer() {
  // Handlers on the pool call back into this object: let them finish first.
  if (impl_->pool != nullptr) impl_->pool->join();
}

Result<std::unique_ptr<LayoutServer>> LayoutServer::Open(LayoutServerOptions options) {
  if (options.dir.empty()) return InvalidArgument("LayoutServerOptions.dir is empty");
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  rocksdb::Env* env = impl->options.env != nullptr ? impl->options.env : rocksdb::Env::Default();
  TALLY_RETURN_IF_ERROR(CreateDirs(env, impl->options.dir));
  rocksdb::Options ro;
  ro.create_if_missing = true;
  ro.keep_log_file_num = 4;
  ro.env = env;
  rocksdb::DB* raw = nullptr;
  TALLY_RETURN_IF_ERROR(
      FromRocks(rocksdb::DB::Open(ro, impl->options.dir, &raw), "open " + impl->options.dir));
  impl->db.reset(raw);
  TALLY_RETURN_IF_ERROR(impl->Load());
  if (impl->options.io_threads > 0) {
    impl->pool = std::make_unique<asio::thread_pool>(impl->options.io_threads);
  }
  return std::unique_ptr<LayoutServer>(new LayoutServer(std::move(impl)));
}

std::optional<uint64_t> LayoutServer::latest_committed_epoch() const {
  std::lock_guard lock(impl_->mu);
  return impl_->LatestLocked();
}

Result<proto::LayoutPrepareResponse> LayoutServer::Prepare(const proto::LayoutPrepareRequest& req) {
  TALLY_RETURN_IF_ERROR(CheckRank(req.rank(), req.has_rank(), "rank"));
  const uint64_t epoch = req.epoch();
  std::lock_guard lock(impl_->mu);
  proto::LayoutPrepareResponse resp;
  if (std::optional<uint64_t> latest = impl_->LatestLocked(); latest && epoch <= *latest) {
    if (epoch < *latest) return impl_->Superseded(epoch, *latest);
    // The decided value; nothing to promise.
    resp.set_committed(true);
    *resp.mutable_accepted_layout() = impl_->committed[epoch];
    return resp;
  }
  proto::LayoutAcceptorState state;
  if (auto it = impl_->states.find(epoch); it != impl_->states.end()) state = it->second;
  if (RankLess(req.rank(), state.promised_rank())) {
    resp.set_promised(false);
  } else {
    if (CompareRanks(req.rank(), state.promised_rank()) != 0) {
      *state.mutable_promised_rank() = req.rank();
      TALLY_RETURN_IF_ERROR(impl_->PutState(epoch, state));
    }
    resp.set_promised(true);
  }
  *resp.mutable_promised_rank() = state.promised_rank();
  if (state.accepted_rank().round() != 0) {
    *resp.mutable_accepted_rank() = state.accepted_rank();
    *resp.mutable_accepted_layout() = state.accepted_layout();
  }
  return resp;
}

Result<proto::LayoutProposeResponse> LayoutServer::Propose(const proto::LayoutProposeRequest& req) {
  TALLY_RETURN_IF_ERROR(CheckRank(req.rank(), req.has_rank(), "rank"));
  const uint64_t epoch = req.epoch();
  TALLY_RETURN_IF_ERROR(CheckLayout(req.has_layout() ? &req.layout() : nullptr, epoch, "layout"));
  std::lock_guard lock(impl_->mu);
  proto::LayoutProposeResponse resp;
  if (std::optional<uint64_t> latest = impl_->LatestLocked(); latest && epoch <= *latest) {
    if (epoch < *latest) return impl_->Superseded(epoch, *latest);
    if (!SameLayout(req.layout(), impl_->committed[epoch])) {
      return WrongEpoch(fmt::format("layout epoch {} is already committed with a different "
                                    "layout; fetch it (layout.committed)",
                                    epoch))
          .WithCurrentEpoch(epoch);
    }
    resp.set_accepted(true);  // the decided value again: idempotent
    *resp.mutable_promised_rank() = req.rank();
    return resp;
  }
  proto::LayoutAcceptorState state;
  if (auto it = impl_->states.find(epoch); it != impl_->states.end()) state = it->second;
  if (RankLess(req.rank(), state.promised_rank())) {
    resp.set_accepted(false);
    *resp.mutable_promised_rank() = state.promised_rank();
    return resp;
  }
  const bool unchanged = CompareRanks(req.rank(), state.accepted_rank()) == 0 &&
                         CompareRanks(req.rank(), state.promised_rank()) == 0 &&
                         SameLayout(req.layout(), state.accepted_layout());
  if (!unchanged) {
    *state.mutable_promised_rank() = req.rank();
    *state.mutable_accepted_rank() = req.rank();
    *state.mutable_accepted_layout() = req.layout();
    TALLY_RETURN_IF_ERROR(impl_->PutState(epoch, state));
  }
  resp.set_accepted(true);
  *resp.mutable_promised_rank() = state.promised_rank();
  return resp;
}

Result<proto::LayoutCommitResponse> LayoutServer::Commit(const proto::LayoutCommitRequest& req) {
  const proto::Layout* layout = req.has_layout() ? &req.layout() : nullptr;
  const uint64_t epoch = layout != nullptr ? layout->epoch() : 0;
  TALLY_RETURN_IF_ERROR(CheckLayout(layout, epoch, "layout"));
  std::lock_guard lock(impl_->mu);
  if (auto it = impl_->committed.find(epoch); it != impl_->committed.end()) {
    if (SameLayout(it->second, *layout)) return proto::LayoutCommitResponse();
    return FailedPrecondition(
        fmt::format("layout epoch {} is already committed with a different layout; a layout is "
                    "committed once per epoch (two proposers disagree: report this as a bug)",
                    epoch));
  }
  const std::optional<uint64_t> latest = impl_->LatestLocked();
  const bool newest = !latest || epoch > *latest;
  rocksdb::WriteBatch batch;
  batch.Put(CommittedKey(epoch), layout->SerializeAsString());
  // A newer commit fences every epoch up to it: their Paxos state is moot.
  auto fenced_end = newest ? impl_->states.upper_bound(epoch) : impl_->states.begin();
  for (auto it = impl_->states.begin(); it != fenced_end; ++it) batch.Delete(StateKey(it->first));
  TALLY_RETURN_IF_ERROR(impl_->WriteSynced(&batch, "write " + CommittedKey(epoch)));
  impl_->states.erase(impl_->states.begin(), fenced_end);
  impl_->committed[epoch] = *layout;
  return proto::LayoutCommitResponse();
}

Result<proto::LayoutCommittedResponse> LayoutServer::Committed(
    const proto::LayoutCommittedRequest& req) {
  std::lock_guard lock(impl_->mu);
  const std::optional<uint64_t> latest = impl_->LatestLocked();
  if (!latest) return NotFound("no layout is committed on this layout server yet");
  const uint64_t epoch = req.epoch() == 0 ? *latest : req.epoch();
  auto it = impl_->committed.find(epoch);
  if (it == impl_->committed.end()) {
    return NotFound(
        fmt::format("layout epoch {} is not committed on this layout server (latest committed: {})",
                    epoch, *latest));
  }
  proto::LayoutCommittedResponse resp;
  *resp.mutable_layout() = it->second;
  return resp;
}

namespace {

template <typename Req, typename Resp, typename Fn>
void RegisterOffloaded(net::ServiceRegistry& registry, const char* method, LayoutServer::Impl* impl,
                       Fn fn) {
  net::RegisterTyped<Req, Resp>(
      registry, method, [impl, fn](Req req, net::TypedResponder<Resp> out) {
        impl->Offload([fn, req = std::move(req), out = std::move(out)]() mutable {
          Result<Resp> r = fn(req);
          if (r.ok()) {
            out.Ok(*r);
          } else {
            out.Fail(r.status());
          }
        });
      });
}

}  // namespace

void LayoutServer::Register(net::ServiceRegistry& registry) {
  RegisterOffloaded<proto::LayoutPrepareRequest, proto::LayoutPrepareResponse>(
      registry, kLayoutPrepareMethod, impl_.get(),
      [this](const proto::LayoutPrepareRequest& r) { return Prepare(r); });
  RegisterOffloaded<proto::LayoutProposeRequest, proto::LayoutProposeResponse>(
      registry, kLayoutProposeMethod, impl_.get(),
      [this](const proto::LayoutProposeRequest& r) { return Propose(r); });
  RegisterOffloaded<proto::LayoutCommitRequest, proto::LayoutCommitResponse>(
      registry, kLayoutCommitMethod, impl_.get(),
      [this](const proto::LayoutCommitRequest& r) { return Commit(r); });
  RegisterOffloaded<proto::LayoutCommittedRequest, proto::LayoutCommittedResponse>(
      registry, kLayoutCommittedMethod, impl_.get(),
      [this](const proto::LayoutCommittedRequest& r) { return Committed(r); });
}

}  // namespace tally::log
