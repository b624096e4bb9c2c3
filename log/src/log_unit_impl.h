#pragma once

// Private: the state behind LogUnit, shared by its write and read handlers.

#include <atomic>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <shared_mutex>

#include "tally/log/log_unit.h"
#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"

namespace tally::log {

namespace asio = boost::asio;
using net::TypedResponder;

struct LogUnit::Impl {
  LogUnitOptions options;
  std::unique_ptr<SegmentStore> store;
  std::unique_ptr<asio::thread_pool> pool;  // null when options.io_threads == 0
  // Writers hold it shared from the epoch check until their records are
  // submitted; a seal holds it exclusively while it raises the epoch, a
  // reset for its whole wipe. So no write of an older epoch is admitted
  // after a seal, the seal's Flush covers every write admitted before it,
  // and no write is admitted while a reset wipes the store.
  std::shared_mutex seal_mu;
  std::atomic<uint64_t> sealed_epoch{0};

  Impl(LogUnitOptions o, std::unique_ptr<SegmentStore> s)
      : options(std::move(o)), store(std::move(s)) {
    if (options.io_threads > 0) pool = std::make_unique<asio::thread_pool>(options.io_threads);
    sealed_epoch = store->sealed_epoch().value();
  }

  Status CheckEpoch(uint64_t epoch) const {
    uint64_t sealed = sealed_epoch.load(std::memory_order_acquire);
    if (epoch < sealed) {
      return WrongEpoch("request epoch " + std::to_string(epoch) +
                        " is older than this log unit's sealed epoch " + std::to_string(sealed) +
                        "; refresh the layout and retry")
          .WithCurrentEpoch(sealed);
    }
    return Status::OK();
  }

  // Runs `fn` on the I/O pool: reads, seals and trims block on disk or
  // RocksDB. Without a pool (io_threads == 0), runs it here and now.
  template <typename Fn>
  void OffloadIo(Fn fn) {
    if (pool == nullptr) {
      fn();
      return;
    }
    asio::post(*pool, std::move(fn));
  }

  // `req` is arena-owned and valid only during the call.
  void WriteBatch(proto::WriteBatchRequest& req, TypedResponder<proto::WriteBatchResponse> out);
  void Write(proto::WriteRequest req, TypedResponder<proto::WriteResponse> out);
  void FillHole(proto::FillHoleRequest req, TypedResponder<proto::FillHoleResponse> out);
  void Seal(proto::SealRequest req, TypedResponder<proto::SealResponse> out);
  void Reset(proto::ResetRequest req, TypedResponder<proto::ResetResponse> out);
};

// Registers log.read, log.read_range, log.tail, log.stats, log.trim,
// log.stream_addresses and log.stream_maps (log_unit_reads.cc).
void RegisterReadHandlers(net::ServiceRegistry& registry, LogUnit::Impl* impl);

}  // namespace tally::log
