#include "tally/sequencer/sequencer_service.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "tally/proto/sequencer.pb.h"

namespace tally::sequencer {
namespace {

namespace seqpb = ::tally::proto::seq;

const StreamId kA = StreamId::FromName("a");
const StreamId kB = StreamId::FromName("b");

void SetStream(StreamId id, proto::StreamId* out) {
  out->set_hi(id.hi);
  out->set_lo(id.lo);
}

// Drives the registry's handlers directly with serialized bytes, as the
// transport would, without sockets.
class SequencerServiceTest : public ::testing::Test {
 protected:
  SequencerServiceTest() { service_.Register(registry_); }

  // Calls `method` with raw payload bytes; the handler must answer at once.
  Result<std::string> CallRaw(const std::string& method, std::string payload) {
    const net::Handler* handler = registry_.Find(method);
    EXPECT_NE(handler, nullptr) << method;
    if (handler == nullptr) return UnknownMethod(method);
    bool answered = false;
    Status status;
    std::string response;
    (*handler)(std::move(payload), [&](Status st, std::string bytes) {
      answered = true;
      status = std::move(st);
      response = std::move(bytes);
    });
    EXPECT_TRUE(answered) << method << " did not answer on the calling thread";
    if (!status.ok()) return status;
    return response;
  }

  template <typename Resp, typename Req>
  Result<Resp> Call(const std::string& method, const Req& req) {
    auto bytes = CallRaw(method, req.SerializeAsString());
    if (!bytes.ok()) return bytes.status();
    Resp resp;
    EXPECT_TRUE(resp.ParseFromString(*bytes)) << method;
    return resp;
  }

  Result<seqpb::NextResponse> Next(uint64_t epoch, uint32_t count,
                                   std::initializer_list<StreamId> streams) {
    seqpb::NextRequest req;
    req.set_epoch(epoch);
    req.set_count(count);
    for (StreamId s : streams) SetStream(s, req.add_streams());
    return Call<seqpb::NextResponse>("seq.next", req);
  }

  Sequencer core_;
  SequencerService service_{&core_};
  net::ServiceRegistry registry_;
};

TEST_F(SequencerServiceTest, RoundTrip) {
  seqpb::BootstrapRequest boot;
  boot.set_epoch(7);
  boot.set_global_tail(20);
  auto* m = boot.add_streams();
  SetStream(kA, m->mutable_stream());
  m->set_roaring64(EncodeAddresses(std::vector{Address(4), Address(12)}));
  auto booted = Call<seqpb::BootstrapResponse>("seq.bootstrap", boot);
  ASSERT_TRUE(booted.ok()) << booted.status().ToString();
  EXPECT_EQ(booted->global_tail(), 20u);

  auto next = Next(7, 3, {kA, kB});
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->first_address(), 20u);
  EXPECT_EQ(next->count(), 3u);
  ASSERT_EQ(next->previous_size(), 2);
  EXPECT_EQ(next->previous(0).stream().lo(), kA.lo);
  ASSERT_TRUE(next->previous(0).has_tail());
  EXPECT_EQ(next->previous(0).tail(), 12u);
  EXPECT_EQ(next->previous(1).stream().hi(), kB.hi);
  EXPECT_FALSE(next->previous(1).has_tail());

  seqpb::TailRequest tail_req;
  tail_req.set_epoch(7);
  SetStream(kB, tail_req.add_streams());
  SetStream(StreamId::FromName("never"), tail_req.add_streams());
  auto tail = Call<seqpb::TailResponse>("seq.tail", tail_req);
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->global_tail(), 23u);
  ASSERT_EQ(tail->streams_size(), 2);
  EXPECT_EQ(tail->streams(0).tail(), 22u);
  EXPECT_FALSE(tail->streams(1).has_tail());

  seqpb::StreamAddressesRequest sa;
  sa.set_epoch(7);
  SetStream(kA, sa.mutable_stream());
  sa.set_from(5);  // to = 0: no bound
  auto addrs = Call<seqpb::StreamAddressesResponse>("seq.stream_addresses", sa);
  ASSERT_TRUE(addrs.ok());
  auto decoded = DecodeAddresses(addrs->roaring64());
  ASSERT_TRUE(decoded.ok());
  EXPECT_EQ(*decoded, (std::vector<Address>{Address(12), Address(20), Address(21), Address(22)}));
}

TEST_F(SequencerServiceTest, ErrorsCarryCodeAndEpoch) {
  auto before = Next(0, 1, {});
  EXPECT_EQ(before.status().code(), Code::kUnavailable);

  seqpb::BootstrapRequest boot;
  boot.set_epoch(2);
  ASSERT_TRUE(Call<seqpb::BootstrapResponse>("seq.bootstrap", boot).ok());
  auto stale = Next(1, 1, {});
  ASSERT_EQ(stale.status().code(), Code::kWrongEpoch);
  EXPECT_EQ(stale.status().current_epoch(), 2u);
  EXPECT_EQ(Next(2, 0, {}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Next(2, 1, {kA, kA}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(Call<seqpb::BootstrapResponse>("seq.bootstrap", boot).status().current_epoch(), 2u);

  seqpb::BootstrapRequest junk;
  junk.set_epoch(3);
  auto* m = junk.add_streams();
  SetStream(kA, m->mutable_stream());
  m->set_roaring64("not a bitmap");
  EXPECT_EQ(Call<seqpb::BootstrapResponse>("seq.bootstrap", junk).status().code(),
            Code::kMalformed);
  EXPECT_EQ(Next(2, 1, {})->first_address(), 0u);  // still epoch 2, nothing issued before
}

TEST_F(SequencerServiceTest, MalformedRequestBytes) {
  // A truncated varint and a field with an invalid wire type do not parse.
  for (const char* method : {"seq.next", "seq.tail", "seq.bootstrap", "seq.stream_addresses"}) {
    for (std::string bytes : {std::string("\x08\xff", 2), std::string("\x0f\x01", 2)}) {
      auto r = CallRaw(method, bytes);
      ASSERT_EQ(r.status().code(), Code::kMalformed) << method;
      EXPECT_NE(r.status().message().find(method), std::string::npos);
    }
  }
  EXPECT_FALSE(core_.Stats().bootstrapped);
}

}  // namespace
}  // namespace tally::sequencer
