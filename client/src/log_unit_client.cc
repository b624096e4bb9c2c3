#include "tally/client/log_unit_client.h"

#include "rpc.h"
#include "tally/base/address_map.h"
#include "tally/net/frame.h"
#include "tally/net/typed.h"

namespace tally::client {

LogUnitClient::LogUnitClient(std::shared_ptr<net::Channel> channel, Epoch epoch,
                             std::chrono::milliseconds timeout, Threads* threads)
    : channel_(std::move(channel)),
      epoch_(epoch),
      timeout_(timeout),
      threads_(threads != nullptr ? threads : SystemThreads()) {}

template <typename Resp, typename Req>
Result<Resp> LogUnitClient::Call(const char* method, const Req& req) {
  return internal::CallSync<Resp>(*channel_, method, req, timeout_, *threads_);
}

Status LogUnitClient::Write(proto::LogEntry entry) {
  proto::WriteRequest req;
  req.set_epoch(epoch_.value());
  *req.mutable_entry() = std::move(entry);
  return Call<proto::WriteResponse>("log.write", req).status();
}

Result<std::vector<Status>> LogUnitClient::WriteBatch(const std::vector<proto::LogEntry>& entries) {
  proto::WriteBatchRequest req;
  req.set_epoch(epoch_.value());
  for (const auto& e : entries) *req.add_entries() = e;
  auto r = Call<proto::WriteBatchResponse>("log.write_batch", req);
  if (!r.ok()) return r.status();
  return internal::WriteBatchResults("the unit", *r, entries.size());
}

Result<proto::LogEntry> LogUnitClient::Read(Address address) {
  proto::ReadRequest req;
  req.set_epoch(epoch_.value());
  req.set_address(address.value());
  auto r = Call<proto::ReadResponse>("log.read", req);
  if (!r.ok()) return r.status();
  return std::move(*r->mutable_entry());
}

Result<proto::ReadRangeResponse> LogUnitClient::ReadRange(Address from, Address to,
                                                          uint32_t max_entries) {
  proto::ReadRangeRequest req;
  req.set_epoch(epoch_.value());
  req.set_from(from.value());
  req.set_to(to.value());
  req.set_max_entries(max_entries);
  return Call<proto::ReadRangeResponse>("log.read_range", req);
}

Status LogUnitClient::FillHole(Address address) {
  proto::FillHoleRequest req;
  req.set_epoch(epoch_.value());
  req.set_address(address.value());
  return Call<proto::FillHoleResponse>("log.fill_hole", req).status();
}

Result<proto::SealResponse> LogUnitClient::Seal(Epoch epoch) {
  proto::SealRequest req;
  req.set_epoch(epoch.value());
  return Call<proto::SealResponse>("log.seal", req);
}

Result<proto::ResetResponse> LogUnitClient::Reset() {
  proto::ResetRequest req;
  req.set_epoch(epoch_.value());
  return Call<proto::ResetResponse>("log.reset", req);
}

Result<proto::TailResponse> LogUnitClient::Tail() {
  proto::TailRequest req;
  req.set_epoch(epoch_.value());
  return Call<proto::TailResponse>("log.tail", req);
}

Result<proto::StatsResponse> LogUnitClient::Stats() {
  proto::StatsRequest req;
  req.set_epoch(epoch_.value());
  return Call<proto::StatsResponse>("log.stats", req);
}

Result<uint64_t> LogUnitClient::Trim(Address address) {
  proto::TrimRequest req;
  req.set_epoch(epoch_.value());
  req.set_address(address.value());
  auto r = Call<proto::TrimResponse>("log.trim", req);
  if (!r.ok()) return r.status();
  return r->trim_mark();
}

Result<std::vector<Address>> LogUnitClient::StreamAddresses(const StreamId& stream, Address from,
                                                            Address to) {
  proto::StreamAddressesRequest req;
  req.set_epoch(epoch_.value());
  req.mutable_stream()->set_hi(stream.hi);
  req.mutable_stream()->set_lo(stream.lo);
  req.set_from(from.value());
  req.set_to(to.value());
  auto r = Call<proto::StreamAddressesResponse>("log.stream_addresses", req);
  if (!r.ok()) return r.status();
  return DecodeAddresses(r->roaring64());
}

}  // namespace tally::client
