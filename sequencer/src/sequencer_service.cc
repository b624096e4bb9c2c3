#include "tally/sequencer/sequencer_service.h"

#include <string>
#include <utility>
#include <vector>

#include "tally/net/typed.h"
#include "tally/proto/sequencer.pb.h"

namespace tally::sequencer {
namespace {

namespace pb = ::tally::proto;
namespace seqpb = ::tally::proto::seq;

// Answers larger than this (the frame limit minus room for the envelope)
// are refused rather than failing in the transport.
constexpr size_t kMaxAnswerBytes = net::kMaxFrameBytes - 4096;

StreamId FromProto(const pb::StreamId& s) { return StreamId{s.hi(), s.lo()}; }

void ToProto(StreamId id, pb::StreamId* out) {
  out->set_hi(id.hi);
  out->set_lo(id.lo);
}

void ToProto(const StreamTail& t, seqpb::StreamTail* out) {
  ToProto(t.stream, out->mutable_stream());
  if (t.tail != kNoAddress) out->set_tail(t.tail.value());
}

std::vector<StreamId> StreamsOf(const google::protobuf::RepeatedPtrField<pb::StreamId>& in) {
  std::vector<StreamId> out;
  out.reserve(in.size());
  for (const auto& s : in) out.push_back(FromProto(s));
  return out;
}

void Next(Sequencer& core, seqpb::NextRequest req, net::TypedResponder<seqpb::NextResponse> out) {
  std::vector<StreamId> streams = StreamsOf(req.streams());
  Result<Grant> grant = core.Next(Epoch(req.epoch()), req.count(), streams);
  if (!grant.ok()) {
    out.Fail(grant.status());
    return;
  }
  seqpb::NextResponse resp;
  resp.set_first_address(grant->first.value());
  resp.set_count(grant->count);
  resp.mutable_previous()->Reserve(static_cast<int>(grant->previous.size()));
  for (const StreamTail& t : grant->previous) ToProto(t, resp.add_previous());
  out.Ok(resp);
}

void Tail(Sequencer& core, seqpb::TailRequest req, net::TypedResponder<seqpb::TailResponse> out) {
  std::vector<StreamId> streams = StreamsOf(req.streams());
  Result<Tails> tails = core.Tail(Epoch(req.epoch()), streams);
  if (!tails.ok()) {
    out.Fail(tails.status());
    return;
  }
  seqpb::TailResponse resp;
  resp.set_global_tail(tails->global_tail.value());
  for (const StreamTail& t : tails->streams) ToProto(t, resp.add_streams());
  out.Ok(resp);
}

void Bootstrap(Sequencer& core, seqpb::BootstrapRequest req,
               net::TypedResponder<seqpb::BootstrapResponse> out) {
  std::vector<StreamSnapshot> snapshots;
  snapshots.reserve(req.streams_size());
  for (auto& s : *req.mutable_streams()) {
    snapshots.push_back(StreamSnapshot{FromProto(s.stream()), std::move(*s.mutable_roaring64())});
  }
  Result<Address> tail =
      core.Bootstrap(Epoch(req.epoch()), Address(req.global_tail()), std::move(snapshots));
  if (!tail.ok()) {
    out.Fail(tail.status());
    return;
  }
  seqpb::BootstrapResponse resp;
  resp.set_global_tail(tail->value());
  out.Ok(resp);
}

void StreamAddresses(Sequencer& core, seqpb::StreamAddressesRequest req,
                     net::TypedResponder<seqpb::StreamAddressesResponse> out) {
  Address to = req.to() == 0 ? kNoAddress : Address(req.to());
  StreamId stream = FromProto(req.stream());
  Result<std::string> bytes =
      core.StreamAddresses(Epoch(req.epoch()), stream, Address(req.from()), to);
  if (!bytes.ok()) {
    out.Fail(bytes.status());
    return;
  }
  if (bytes->size() > kMaxAnswerBytes) {
    out.Fail(TooLarge("addresses of stream " + stream.ToHex() + " from " +
                      std::to_string(req.from()) + " serialize to " +
                      std::to_string(bytes->size()) +
                      " bytes, more than one frame holds; ask for a narrower range"));
    return;
  }
  seqpb::StreamAddressesResponse resp;
  *resp.mutable_roaring64() = std::move(*bytes);
  out.Ok(resp);
}

}  // namespace

void SequencerService::Register(net::ServiceRegistry& registry) {
  Sequencer* core = core_;
  net::RegisterTyped<seqpb::NextRequest, seqpb::NextResponse>(
      registry, "seq.next",
      [core](auto req, auto out) { Next(*core, std::move(req), std::move(out)); });
  net::RegisterTyped<seqpb::TailRequest, seqpb::TailResponse>(
      registry, "seq.tail",
      [core](auto req, auto out) { Tail(*core, std::move(req), std::move(out)); });
  net::RegisterTyped<seqpb::BootstrapRequest, seqpb::BootstrapResponse>(
      registry, "seq.bootstrap",
      [core](auto req, auto out) { Bootstrap(*core, std::move(req), std::move(out)); });
  net::RegisterTyped<seqpb::StreamAddressesRequest, seqpb::StreamAddressesResponse>(
      registry, "seq.stream_addresses",
      [core](auto req, auto out) { StreamAddresses(*core, std::move(req), std::move(out)); });
}

}  // namespace tally::sequencer
