// The read side of the log unit: log.read, log.read_range, log.tail,
// log.trim, log.stream_addresses and log.stream_maps. Reads run on the unit's I/O pool (they
// pread segment files); answers are assembled from stored bytes without
// re-parsing entries.

#include "entry_codec.h"
#include "log_unit_impl.h"
#include "tally/base/address_map.h"

namespace tally::log {

namespace {

// Field numbers of ReadResponse.entry and ReadRangeResponse.entries.
constexpr int kReadResponseEntryField = 1;
constexpr int kReadRangeEntriesField = 1;

// Up to `limit` addresses held in [from, to) with a % stripes == stripe.
std::vector<Address> ListStripe(SegmentStore& store, Address from, Address to, size_t limit,
                                uint32_t stripes, uint32_t stripe) {
  if (stripes <= 1) return store.ListAddresses(from, to, limit);
  std::vector<Address> out;
  while (out.size() < limit && from < to) {
    std::vector<Address> some = store.ListAddresses(from, to, limit);
    for (Address a : some) {
      if (a.value() % stripes == stripe && out.size() < limit) out.push_back(a);
    }
    if (some.size() < limit) break;
    from = Address(some.back().value() + 1);
  }
  return out;
}

void Read(LogUnit::Impl* im, proto::ReadRequest req, TypedResponder<proto::ReadResponse> out) {
  Status st = im->CheckEpoch(req.epoch());
  if (!st.ok()) {
    out.Fail(std::move(st));
    return;
  }
  im->OffloadIo([im, req = std::move(req), out = std::move(out)]() mutable {
    auto r = im->store->Read(Address(req.address()));
    if (!r.ok()) {
      out.Fail(r.status());
      return;
    }
    std::string bytes;
    AppendRecordAsEntryField(*r, kReadResponseEntryField, &bytes);
    out.OkSerialized(std::move(bytes));
  });
}

void ReadRange(LogUnit::Impl* im, proto::ReadRangeRequest req,
               TypedResponder<proto::ReadRangeResponse> out) {
  Status st = im->CheckEpoch(req.epoch());
  if (!st.ok()) {
    out.Fail(std::move(st));
    return;
  }
  if (req.to() < req.from()) {
    out.Fail(InvalidArgument("read_range from " + std::to_string(req.from()) + " to " +
                             std::to_string(req.to()) + ": 'to' must not be below 'from'"));
    return;
  }
  im->OffloadIo([im, req = std::move(req), out = std::move(out)]() mutable {
    size_t limit = im->options.max_range_entries;
    if (req.max_entries() != 0 && req.max_entries() < limit) limit = req.max_entries();
    StoreStats stats = im->store->Stats();
    Address from(std::max<uint64_t>(req.from(), stats.trim_mark));
    std::vector<Address> addrs =
        ListStripe(*im->store, from, Address(req.to()), limit, req.stripes(), req.stripe());
    // Read first, then size the answer once: appending to a growing string
    // would copy what it holds again at every reallocation (a state
    // transfer reads megabytes per call).
    std::vector<Record> records;
    records.reserve(addrs.size());
    size_t size = 32;  // the scalar fields
    for (Address a : addrs) {
      auto r = im->store->Read(a);
      if (r.status().code() == Code::kTrimmed) continue;  // trimmed while we read
      if (!r.ok()) {
        out.Fail(r.status());
        return;
      }
      size += r->payload.size() + 64;  // a hole's synthesized entry, tag and length
      records.push_back(std::move(*r));
    }
    std::string bytes;
    bytes.reserve(size);
    for (const Record& r : records) AppendRecordAsEntryField(r, kReadRangeEntriesField, &bytes);
    // The scalar fields go after the entries; protobuf accepts any field order.
    proto::ReadRangeResponse tail;
    tail.set_trim_mark(stats.trim_mark);
    uint64_t next = addrs.size() == limit && !addrs.empty() ? addrs.back().value() + 1 : req.to();
    tail.set_next(next);
    bytes += tail.SerializeAsString();
    out.OkSerialized(std::move(bytes));
  });
}

void Tail(LogUnit::Impl* im, proto::TailRequest req, TypedResponder<proto::TailResponse> out) {
  Status st = im->CheckEpoch(req.epoch());
  if (!st.ok()) {
    out.Fail(std::move(st));
    return;
  }
  StoreStats stats = im->store->Stats();
  proto::TailResponse resp;
  resp.set_local_tail(stats.local_tail);
  resp.set_trim_mark(stats.trim_mark);
  resp.set_sealed_epoch(im->sealed_epoch.load());
  resp.set_entries(stats.entries);
  out.Ok(resp);
}

void Stats(LogUnit::Impl* im, TypedResponder<proto::StatsResponse> out) {
  const StoreStats stats = im->store->Stats();
  proto::StatsResponse resp;
  resp.set_local_tail(stats.local_tail);
  resp.set_trim_mark(stats.trim_mark);
  resp.set_sealed_epoch(im->sealed_epoch.load());
  resp.set_entries(stats.entries);
  resp.set_segments(stats.segments);
  resp.set_segment_bytes(stats.bytes);
  const CommitLatency& c = stats.commit;
  resp.set_commits(c.commits);
  resp.set_commit_records(c.records);
  resp.set_commit_bytes(c.bytes);
  resp.set_commit_sum_us(c.sum_us);
  resp.set_commit_max_us(c.max_us);
  for (size_t i = 0; i < c.buckets.size(); ++i) {
    resp.add_commit_bucket_le_us(CommitLatency::kBucketLeUs[i]);
    resp.add_commit_bucket_counts(c.buckets[i]);
  }
  resp.set_uptime_ms(stats.uptime_ms);
  out.Ok(resp);
}

void Trim(LogUnit::Impl* im, proto::TrimRequest req, TypedResponder<proto::TrimResponse> out) {
  Status st = im->CheckEpoch(req.epoch());
  if (!st.ok()) {
    out.Fail(std::move(st));
    return;
  }
  im->OffloadIo([im, req = std::move(req), out = std::move(out)]() mutable {
    Status s = im->store->Trim(Address(req.address()));
    if (!s.ok()) {
      out.Fail(s.WithContext("trim to " + std::to_string(req.address())));
      return;
    }
    proto::TrimResponse resp;
    resp.set_trim_mark(im->store->Stats().trim_mark);
    out.Ok(resp);
  });
}

void StreamAddresses(LogUnit::Impl* im, proto::StreamAddressesRequest req,
                     TypedResponder<proto::StreamAddressesResponse> out) {
  Status st = im->CheckEpoch(req.epoch());
  if (!st.ok()) {
    out.Fail(std::move(st));
    return;
  }
  Address to = req.to() == 0 ? kMaxAddress : Address(req.to());
  std::vector<Address> addrs = im->store->StreamAddresses(
      StreamId{req.stream().hi(), req.stream().lo()}, Address(req.from()), to);
  proto::StreamAddressesResponse resp;
  resp.set_roaring64(EncodeAddresses(addrs));
  out.Ok(resp);
}

// Every stream's map, for a sequencer bootstrap. Runs on the I/O pool: it
// walks every stream bitmap.
void StreamMaps(LogUnit::Impl* im, proto::StreamMapsRequest req,
                TypedResponder<proto::StreamMapsResponse> out) {
  Status st = im->CheckEpoch(req.epoch());
  if (!st.ok()) {
    out.Fail(std::move(st));
    return;
  }
  im->OffloadIo([im, out = std::move(out)]() mutable {
    proto::StreamMapsResponse resp;
    size_t bytes = 0;
    for (const StreamId& stream : im->store->Streams()) {
      std::vector<Address> addrs = im->store->StreamAddresses(stream, Address(0), kMaxAddress);
      if (addrs.empty()) continue;  // trimmed away since Streams()
      proto::StreamMap* m = resp.add_streams();
      m->mutable_stream()->set_hi(stream.hi);
      m->mutable_stream()->set_lo(stream.lo);
      m->set_roaring64(EncodeAddresses(addrs));
      bytes += m->roaring64().size() + 32;
      if (bytes > net::kMaxFrameBytes - 1024) {
        out.Fail(TooLarge("the stream maps of this log unit exceed one frame (" +
                          std::to_string(net::kMaxFrameBytes) +
                          " bytes); trim the log to shrink them"));
        return;
      }
    }
    out.Ok(resp);
  });
}

}  // namespace

void RegisterReadHandlers(net::ServiceRegistry& registry, LogUnit::Impl* im) {
  net::RegisterTyped<proto::ReadRequest, proto::ReadResponse>(
      registry, "log.read", [im](auto req, auto out) { Read(im, std::move(req), std::move(out)); });
  net::RegisterTyped<proto::ReadRangeRequest, proto::ReadRangeResponse>(
      registry, "log.read_range",
      [im](auto req, auto out) { ReadRange(im, std::move(req), std::move(out)); });
  net::RegisterTyped<proto::TailRequest, proto::TailResponse>(
      registry, "log.tail", [im](auto req, auto out) { Tail(im, std::move(req), std::move(out)); });
  net::RegisterTyped<proto::StatsRequest, proto::StatsResponse>(
      registry, "log.stats", [im](auto, auto out) { Stats(im, std::move(out)); });
  net::RegisterTyped<proto::TrimRequest, proto::TrimResponse>(
      registry, "log.trim", [im](auto req, auto out) { Trim(im, std::move(req), std::move(out)); });
  net::RegisterTyped<proto::StreamAddressesRequest, proto::StreamAddressesResponse>(
      registry, "log.stream_addresses",
      [im](auto req, auto out) { StreamAddresses(im, std::move(req), std::move(out)); });
  net::RegisterTyped<proto::StreamMapsRequest, proto::StreamMapsResponse>(
      registry, "log.stream_maps",
      [im](auto req, auto out) { StreamMaps(im, std::move(req), std::move(out)); });
}

}  // namespace tally::log
