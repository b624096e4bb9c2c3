#include "tally/log/log_unit.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <mutex>

#include "entry_codec.h"
#include "log_unit_impl.h"
#include "tally/net/frame.h"

namespace tally::log {

void LogUnit::Impl::WriteBatch(proto::WriteBatchRequest& req,
                               TypedResponder<proto::WriteBatchResponse> out) {
  const size_t n = req.entries_size();
  std::vector<Record> records;
  records.reserve(n);
  // Entries refused before storage keep their error; the rest go to the store.
  std::vector<Status> early(n);
  std::vector<uint32_t> submitted;  // index into req.entries of each record
  submitted.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto* e = req.mutable_entries(i);
    Status st = ValidateDataEntry(*e);
    if (!st.ok()) {
      early[i] = std::move(st);
      continue;
    }
    e->set_epoch(req.epoch());
    records.push_back(RecordFromEntry(*e));
    submitted.push_back(static_cast<uint32_t>(i));
  }
  std::shared_lock lock(seal_mu);
  Status epoch_st = CheckEpoch(req.epoch());
  if (!epoch_st.ok()) {
    out.Fail(std::move(epoch_st));
    return;
  }
  store->Append(std::move(records),
                [out = std::move(out), early = std::move(early),
                 submitted = std::move(submitted)](std::vector<Status> results) mutable {
                  proto::WriteBatchResponse resp;
                  const auto ok = [](const Status& st) { return st.ok(); };
                  if (std::all_of(early.begin(), early.end(), ok) &&
                      std::all_of(results.begin(), results.end(), ok)) {
                    resp.set_all_ok(true);
                    out.Ok(resp);
                    return;
                  }
                  // An OK result is a default Error (code 0): only failures
                  // are filled in.
                  resp.mutable_results()->Reserve(static_cast<int>(early.size()));
                  for (auto& st : early) {
                    proto::Error* e = resp.add_results();
                    if (!st.ok()) *e = net::ToProto(st);
                  }
                  for (size_t k = 0; k < results.size(); ++k) {
                    if (!results[k].ok()) {
                      *resp.mutable_results(submitted[k]) = net::ToProto(results[k]);
                    }
                  }
                  out.Ok(resp);
                });
}

namespace {

// Admits one record under the seal lock and answers `out` with Resp{} once
// it is durable, or with the epoch or storage error.
template <typename Resp>
void AdmitOne(LogUnit::Impl* im, uint64_t epoch, Record record, TypedResponder<Resp> out) {
  std::vector<Record> records;
  records.push_back(std::move(record));
  std::shared_lock lock(im->seal_mu);
  Status epoch_st = im->CheckEpoch(epoch);
  if (!epoch_st.ok()) {
    out.Fail(std::move(epoch_st));
    return;
  }
  im->store->Append(std::move(records), [out = std::move(out)](std::vector<Status> r) mutable {
    if (!r[0].ok()) {
      out.Fail(std::move(r[0]));
    } else {
      out.Ok(Resp());
    }
  });
}

}  // namespace

void LogUnit::Impl::Write(proto::WriteRequest req, TypedResponder<proto::WriteResponse> out) {
  Status st = ValidateDataEntry(req.entry());
  if (!st.ok()) {
    out.Fail(std::move(st));
    return;
  }
  req.mutable_entry()->set_epoch(req.epoch());
  AdmitOne(this, req.epoch(), RecordFromEntry(req.entry()), std::move(out));
}

void LogUnit::Impl::FillHole(proto::FillHoleRequest req,
                             TypedResponder<proto::FillHoleResponse> out) {
  Record hole;
  hole.address = Address(req.address());
  hole.epoch = Epoch(req.epoch());
  hole.type = RecordType::kHole;
  AdmitOne(this, req.epoch(), std::move(hole), std::move(out));
}

void LogUnit::Impl::Seal(proto::SealRequest req, TypedResponder<proto::SealResponse> out) {
  OffloadIo([this, req = std::move(req), out = std::move(out)]() mutable {
    Epoch now;
    {
      std::unique_lock lock(seal_mu);
      auto r = store->SetSealedEpoch(Epoch(req.epoch()));
      if (!r.ok()) {
        out.Fail(r.status().WithContext("seal at epoch " + std::to_string(req.epoch())));
        return;
      }
      now = *r;
      sealed_epoch.store(now.value(), std::memory_order_release);
    }
    // Every write admitted before the seal is durable before we answer.
    store->Flush();
    proto::SealResponse resp;
    resp.set_sealed_epoch(now.value());
    resp.set_local_tail(store->Stats().local_tail);
    spdlog::info("log unit sealed at epoch {} (local tail {})", now.value(), resp.local_tail());
    out.Ok(resp);
  });
}

void LogUnit::Impl::Reset(proto::ResetRequest req, TypedResponder<proto::ResetResponse> out) {
  OffloadIo([this, req = std::move(req), out = std::move(out)]() mutable {
    // Exclusive for the whole wipe: writes admitted before are durable and
    // wiped with the rest; writes arriving meanwhile wait and then meet the
    // new epoch, so no older write lands in the emptied store.
    std::unique_lock lock(seal_mu);
    Status st = CheckEpoch(req.epoch());
    if (!st.ok()) {
      out.Fail(std::move(st));
      return;
    }
    store->Flush();
    const StoreStats before = store->Stats();
    auto r = store->Wipe(Epoch(req.epoch()));
    // Raised even by a wipe that failed after recording its marker.
    sealed_epoch.store(store->sealed_epoch().value(), std::memory_order_release);
    if (!r.ok()) {
      out.Fail(r.status().WithContext("reset at epoch " + std::to_string(req.epoch())));
      return;
    }
    proto::ResetResponse resp;
    resp.set_sealed_epoch(store->sealed_epoch().value());
    resp.set_entries_dropped(before.entries);
    resp.set_bytes_dropped(before.bytes);
    spdlog::warn(
        "log unit reset at epoch {}: dropped {} entries ({} bytes, local tail was {}, trim mark "
        "{}); now empty and sealed at epoch {}",
        req.epoch(), before.entries, before.bytes, before.local_tail, before.trim_mark,
        resp.sealed_epoch());
    out.Ok(resp);
  });
}

Result<std::unique_ptr<LogUnit>> LogUnit::Open(LogUnitOptions options, RecoveryReport* report) {
  TALLY_ASSIGN_OR_RETURN(auto store, SegmentStore::Open(options.store, report));
  SegmentStore* raw = store.get();
  auto impl = std::make_unique<Impl>(std::move(options), std::move(store));
  return std::unique_ptr<LogUnit>(new LogUnit(std::move(impl), raw));
}

LogUnit::LogUnit(std::unique_ptr<Impl> impl, SegmentStore* store)
    : impl_(std::move(impl)), store_(store) {}

LogUnit::~LogUnit() {
  if (impl_->pool != nullptr) impl_->pool->join();
  impl_->store->Flush();
}

void LogUnit::Flush() { impl_->store->Flush(); }

void LogUnit::Register(net::ServiceRegistry& registry) {
  Impl* im = impl_.get();
  net::RegisterTyped<proto::WriteRequest, proto::WriteResponse>(
      registry, "log.write",
      [im](auto req, auto out) { im->Write(std::move(req), std::move(out)); });
  net::RegisterTypedOnArena<proto::WriteBatchRequest, proto::WriteBatchResponse>(
      registry, "log.write_batch",
      [im](auto& req, auto out) { im->WriteBatch(req, std::move(out)); });
  net::RegisterTyped<proto::FillHoleRequest, proto::FillHoleResponse>(
      registry, "log.fill_hole",
      [im](auto req, auto out) { im->FillHole(std::move(req), std::move(out)); });
  net::RegisterTyped<proto::SealRequest, proto::SealResponse>(
      registry, "log.seal", [im](auto req, auto out) { im->Seal(std::move(req), std::move(out)); });
  net::RegisterTyped<proto::ResetRequest, proto::ResetResponse>(
      registry, "log.reset",
      [im](auto req, auto out) { im->Reset(std::move(req), std::move(out)); });
  RegisterReadHandlers(registry, im);
}

}  // namespace tally::log
