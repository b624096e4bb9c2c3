#include "tally/client/state_transfer.h"

#include <algorithm>
#include <map>
#include <vector>

#include "rpc.h"
#include "tally/base/threads.h"
#include "tally/client/log_unit_client.h"

namespace tally::client {
namespace {

constexpr size_t kMaxBatchBytes = 8u << 20;  // per log.write_batch

Status StatusOf(const Status& s) { return s; }
template <typename T>
Status StatusOf(const Result<T>& r) {
  return r.status();
}

// Runs `call` until it succeeds, fails for good, or `retries` transient
// failures have passed.
template <typename F>
auto Retry(int retries, F call) -> decltype(call()) {
  for (int attempt = 0;; ++attempt) {
    auto r = call();
    if (StatusOf(r).ok() || !internal::IsTransient(StatusOf(r)) || attempt >= retries) return r;
    SystemThreads()->SleepNanos(int64_t{50'000'000} * (attempt + 1));
  }
}

// Equal for healing: type, payload and streams. The epoch differs between
// replicas (a unit stores the epoch of the request that wrote it); metadata
// is the writer's and not compared either.
bool SameEntry(const proto::LogEntry& a, const proto::LogEntry& b) {
  if (a.type() != b.type()) return false;
  if (a.type() == proto::HOLE) return true;
  if (a.payload() != b.payload() || a.streams_size() != b.streams_size()) return false;
  for (int i = 0; i < a.streams_size(); ++i) {
    if (a.streams(i).hi() != b.streams(i).hi() || a.streams(i).lo() != b.streams(i).lo()) {
      return false;
    }
  }
  return true;
}

Status Divergent(const std::string& to_unit, const std::string& from_unit, uint64_t address) {
  return FailedPrecondition(to_unit + " holds divergent data at address " +
                            std::to_string(address) + " (its entry differs from " + from_unit +
                            "'s); the node must be wiped (stopped, its data dir removed) before "
                            "it rejoins: state transfer never overwrites");
}

struct Copier {
  const std::string& from_unit;
  const std::string& to_unit;
  const CopyOptions& options;
  LogUnitClient src;
  LogUnitClient dst;
  TransferStats stats;

  // `want` was refused ALREADY_WRITTEN by the target: it must hold `want`.
  Status CheckHeld(const proto::LogEntry& want) {
    for (int attempt = 0;; ++attempt) {
      auto held = Retry(options.retries, [&] { return dst.Read(Address(want.address())); });
      // "write in progress": the first write is not durable yet.
      if (held.status().code() == Code::kUnwritten && attempt < options.retries) {
        SystemThreads()->SleepNanos(20'000'000);
        continue;
      }
      if (!held.ok()) {
        return held.status().WithContext("reading address " + std::to_string(want.address()) +
                                         " back from " + to_unit);
      }
      if (!SameEntry(*held, want)) return Divergent(to_unit, from_unit, want.address());
      ++stats.skipped;
      return Status::OK();
    }
  }

  Status WriteBatch(std::vector<proto::LogEntry>* batch) {
    if (batch->empty()) return Status::OK();
    auto results = Retry(options.retries, [&] { return dst.WriteBatch(*batch); });
    if (!results.ok()) return results.status().WithContext("log.write_batch to " + to_unit);
    for (size_t i = 0; i < batch->size(); ++i) {
      const Status& st = (*results)[i];
      const auto& e = (*batch)[i];
      if (st.ok()) {
        ++stats.entries;
        stats.bytes += e.payload().size();
      } else if (st.code() == Code::kAlreadyWritten) {
        TALLY_RETURN_IF_ERROR(CheckHeld(e));
      } else {
        return st.WithContext("writing address " + std::to_string(e.address()) + " to " + to_unit);
      }
    }
    batch->clear();
    return Status::OK();
  }

  Status FillHole(const proto::LogEntry& hole) {
    Status st = Retry(options.retries, [&] { return dst.FillHole(Address(hole.address())); });
    if (st.ok()) {
      ++stats.entries;
      ++stats.holes;
      return st;
    }
    if (st.code() == Code::kAlreadyWritten) return CheckHeld(hole);
    return st.WithContext("filling the hole at " + std::to_string(hole.address()) + " on " +
                          to_unit);
  }

  // What the target holds among the addresses of `entries`.
  Result<std::map<uint64_t, proto::LogEntry>> Held(const proto::ReadRangeResponse& chunk,
                                                   uint32_t max_entries) {
    std::map<uint64_t, proto::LogEntry> held;
    if (chunk.entries().empty()) return held;
    uint64_t p = chunk.entries(0).address();
    const uint64_t end = chunk.entries(chunk.entries_size() - 1).address() + 1;
    while (p < end) {
      auto r = Retry(options.retries,
                     [&] { return dst.ReadRange(Address(p), Address(end), max_entries); });
      if (!r.ok()) return r.status().WithContext("log.read_range on " + to_unit);
      for (auto& e : *r->mutable_entries()) {
        const uint64_t a = e.address();
        held.emplace(a, std::move(e));
      }
      if (r->next() <= p) break;
      p = r->next();
    }
    return held;
  }
};

}  // namespace

Result<TransferStats> CopyRange(net::Transport& transport, const std::string& from_unit,
                                const std::string& to_unit, Address from, Address to,
                                uint64_t epoch, ProgressFn progress, const CopyOptions& options) {
  if (from_unit == to_unit) {
    return InvalidArgument("state transfer from " + from_unit + " to itself");
  }
  Copier c{from_unit,
           to_unit,
           options,
           LogUnitClient(transport.Connect(from_unit), Epoch(epoch), options.rpc_timeout),
           LogUnitClient(transport.Connect(to_unit), Epoch(epoch), options.rpc_timeout),
           {}};
  c.stats.next = from.value();
  uint32_t chunk = std::max<uint32_t>(options.chunk_entries, 1);
  const uint32_t stripes = std::max<uint32_t>(options.stripes, 1);
  if (options.stripe >= stripes) {
    return InvalidArgument("stripe " + std::to_string(options.stripe) + " of " +
                           std::to_string(stripes));
  }
  bool target_trimmed = false;
  uint64_t cur = from.value();
  while (cur < to.value()) {
    auto r = Retry(options.retries, [&] { return c.src.ReadRange(Address(cur), to, chunk); });
    if (!r.ok()) {
      if (r.status().code() == Code::kTooLarge && chunk > 1) {
        chunk /= 2;
        continue;
      }
      return r.status().WithContext("log.read_range [" + std::to_string(cur) + ", " +
                                    std::to_string(to.value()) + ") on " + from_unit);
    }
    c.stats.trim_mark = std::max(c.stats.trim_mark, r->trim_mark());
    if (!target_trimmed && r->trim_mark() > cur) {
      // The source answers TRIMMED below its mark: so must the target, or a
      // reader at the new tail would see UNWRITTEN and try to fill holes.
      auto t = Retry(options.retries, [&] { return c.dst.Trim(Address(r->trim_mark())); });
      if (!t.ok()) return t.status().WithContext("trimming " + to_unit);
      target_trimmed = true;
    }
    auto held = c.Held(*r, chunk);
    if (!held.ok()) return held.status();
    std::vector<proto::LogEntry> batch;
    size_t batch_bytes = 0;
    for (auto& e : *r->mutable_entries()) {
      if (e.address() % stripes != options.stripe) continue;
      auto it = held->find(e.address());
      if (it != held->end()) {
        if (!SameEntry(it->second, e)) return Divergent(to_unit, from_unit, e.address());
        ++c.stats.skipped;
        continue;
      }
      if (e.type() == proto::HOLE) {
        TALLY_RETURN_IF_ERROR(c.FillHole(e));
        continue;
      }
      batch_bytes += e.ByteSizeLong();
      batch.push_back(std::move(e));
      if (batch_bytes >= kMaxBatchBytes) {
        TALLY_RETURN_IF_ERROR(c.WriteBatch(&batch));
        batch_bytes = 0;
      }
    }
    TALLY_RETURN_IF_ERROR(c.WriteBatch(&batch));
    const uint64_t next = std::max(r->next(), cur + 1);
    cur = std::min(next, to.value());
    c.stats.next = cur;
    if (progress) progress(c.stats);
  }
  return c.stats;
}

}  // namespace tally::client
