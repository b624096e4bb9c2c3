// The log unit's RPC handlers, driven through the ServiceRegistry without
// sockets: write-once, epochs and seal, holes, ranges, trim, streams, reset,
// and malformed requests.

#include "tally/log/log_unit.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <future>
#include <thread>

#include "log_unit_fixture.h"
#include "tally/net/frame.h"
#include "tally/net/inproc_transport.h"
#include "tally/net/typed.h"
#include "tally/proto/logunit.pb.h"

namespace tally::log {
namespace {

class LogUnitTest : public LogUnitTestBase {
 protected:
  static proto::LogEntry Entry(uint64_t address, const std::string& data,
                               const std::string& stream = "") {
    proto::LogEntry e;
    e.set_address(address);
    e.set_type(proto::DATA);
    e.set_payload(data);
    if (!stream.empty()) {
      StreamId id = StreamId::FromName(stream);
      e.add_streams()->set_hi(id.hi);
      e.mutable_streams(0)->set_lo(id.lo);
    }
    return e;
  }

  Status Write(uint64_t epoch, proto::LogEntry e) {
    proto::WriteRequest req;
    req.set_epoch(epoch);
    *req.mutable_entry() = std::move(e);
    return Call<proto::WriteResponse>("log.write", req).status();
  }

  Result<proto::LogEntry> Read(uint64_t epoch, uint64_t address) {
    proto::ReadRequest req;
    req.set_epoch(epoch);
    req.set_address(address);
    auto r = Call<proto::ReadResponse>("log.read", req);
    if (!r.ok()) return r.status();
    return r->entry();
  }

  Result<proto::SealResponse> Seal(uint64_t epoch) {
    proto::SealRequest req;
    req.set_epoch(epoch);
    return Call<proto::SealResponse>("log.seal", req);
  }
};

TEST_F(LogUnitTest, WriteThenReadReturnsTheEntry) {
  ASSERT_TRUE(Write(0, Entry(7, "hello", "switches")).ok());
  auto r = Read(0, 7);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->payload(), "hello");
  EXPECT_EQ(r->address(), 7u);
  EXPECT_EQ(r->type(), proto::DATA);
  ASSERT_EQ(r->streams_size(), 1);
  EXPECT_EQ(r->streams(0).hi(), StreamId::FromName("switches").hi);
}

TEST_F(LogUnitTest, SecondWriteOfAnAddressFailsNamingIt) {
  ASSERT_TRUE(Write(0, Entry(4812, "first")).ok());
  Status st = Write(0, Entry(4812, "second"));
  EXPECT_EQ(st.code(), Code::kAlreadyWritten);
  EXPECT_NE(st.message().find("4812"), std::string::npos) << st.message();
  EXPECT_EQ(Read(0, 4812)->payload(), "first");
}

TEST_F(LogUnitTest, UnwrittenAddressSaysSo) {
  EXPECT_EQ(Read(0, 99).status().code(), Code::kUnwritten);
}

TEST_F(LogUnitTest, HoleIsReadAsHoleAndBlocksLaterWrite) {
  proto::FillHoleRequest req;
  req.set_address(3);
  ASSERT_TRUE(Call<proto::FillHoleResponse>("log.fill_hole", req).ok());
  auto r = Read(0, 3);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->type(), proto::HOLE);
  EXPECT_EQ(Write(0, Entry(3, "late")).code(), Code::kAlreadyWritten);
  // Filling a written address is refused too: the reader must re-read it.
  ASSERT_TRUE(Write(0, Entry(4, "data")).ok());
  req.set_address(4);
  EXPECT_EQ(Call<proto::FillHoleResponse>("log.fill_hole", req).status().code(),
            Code::kAlreadyWritten);
}

TEST_F(LogUnitTest, SealFencesOlderEpochsWithTheCurrentOne) {
  ASSERT_TRUE(Write(0, Entry(1, "before")).ok());
  auto s = Seal(3);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->sealed_epoch(), 3u);
  EXPECT_EQ(s->local_tail(), 2u);
  Status st = Write(2, Entry(2, "stale"));
  EXPECT_EQ(st.code(), Code::kWrongEpoch);
  ASSERT_TRUE(st.current_epoch().has_value());
  EXPECT_EQ(*st.current_epoch(), 3u);
  EXPECT_EQ(Read(2, 1).status().code(), Code::kWrongEpoch);
  EXPECT_TRUE(Write(3, Entry(2, "current")).ok());
  // Epochs never go down, and the seal survives a restart.
  EXPECT_EQ(Seal(1)->sealed_epoch(), 3u);
  Reopen();
  EXPECT_EQ(Write(2, Entry(5, "stale after restart")).code(), Code::kWrongEpoch);
  EXPECT_EQ(Read(3, 2)->payload(), "current");
}

TEST_F(LogUnitTest, WriteBatchReportsEachEntry) {
  ASSERT_TRUE(Write(0, Entry(11, "taken")).ok());
  proto::WriteBatchRequest req;
  *req.add_entries() = Entry(10, "a");
  *req.add_entries() = Entry(11, "b");
  proto::LogEntry bad = Entry(12, "c");
  bad.set_type(proto::HOLE);
  *req.add_entries() = bad;
  *req.add_entries() = Entry(13, "d");
  auto r = Call<proto::WriteBatchResponse>("log.write_batch", req);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->results_size(), 4);
  EXPECT_EQ(r->results(0).code(), proto::OK);
  EXPECT_EQ(r->results(1).code(), proto::ALREADY_WRITTEN);
  EXPECT_EQ(r->results(2).code(), proto::INVALID_ARGUMENT);
  EXPECT_EQ(r->results(3).code(), proto::OK);
  EXPECT_EQ(Read(0, 13)->payload(), "d");
  EXPECT_EQ(Read(0, 12).status().code(), Code::kUnwritten);
}

TEST_F(LogUnitTest, WriteBatchAnswersAllOkWithoutPerEntryResults) {
  proto::WriteBatchRequest req;
  for (uint64_t a = 20; a < 25; ++a) *req.add_entries() = Entry(a, "v" + std::to_string(a));
  auto r = Call<proto::WriteBatchResponse>("log.write_batch", req);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->all_ok());
  EXPECT_EQ(r->results_size(), 0);
  for (uint64_t a = 20; a < 25; ++a) EXPECT_EQ(Read(0, a)->payload(), "v" + std::to_string(a));
  // One entry refused: every entry gets its own result again.
  auto again = Call<proto::WriteBatchResponse>("log.write_batch", req);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->all_ok());
  ASSERT_EQ(again->results_size(), 5);
  EXPECT_EQ(again->results(4).code(), proto::ALREADY_WRITTEN);
}

TEST_F(LogUnitTest, WriteBatchThatDoesNotParseIsMalformed) {
  auto [st, bytes] = CallRaw("log.write_batch", std::string("\x0a\xff\xff\xff", 4));
  EXPECT_EQ(st.code(), Code::kMalformed) << st.ToString();
  EXPECT_NE(st.message().find("log.write_batch"), std::string::npos) << st.ToString();
}

TEST_F(LogUnitTest, ReadRangeTailTrimAndStreams) {
  for (uint64_t a = 0; a < 20; ++a) {
    ASSERT_TRUE(Write(0, Entry(a, "v" + std::to_string(a), a % 2 ? "odd" : "even")).ok());
  }
  proto::ReadRangeRequest rr;
  rr.set_from(5);
  rr.set_to(9);
  auto range = Call<proto::ReadRangeResponse>("log.read_range", rr);
  ASSERT_TRUE(range.ok());
  ASSERT_EQ(range->entries_size(), 4);
  EXPECT_EQ(range->entries(0).payload(), "v5");
  EXPECT_EQ(range->entries(3).payload(), "v8");
  EXPECT_EQ(range->next(), 9u);

  proto::StreamAddressesRequest sr;
  StreamId odd = StreamId::FromName("odd");
  sr.mutable_stream()->set_hi(odd.hi);
  sr.mutable_stream()->set_lo(odd.lo);
  sr.set_from(0);
  auto streams = Call<proto::StreamAddressesResponse>("log.stream_addresses", sr);
  ASSERT_TRUE(streams.ok());
  EXPECT_FALSE(streams->roaring64().empty());

  proto::TrimRequest tr;
  tr.set_address(10);
  auto trim = Call<proto::TrimResponse>("log.trim", tr);
  ASSERT_TRUE(trim.ok()) << trim.status().ToString();
  EXPECT_EQ(trim->trim_mark(), 10u);
  EXPECT_EQ(Read(0, 9).status().code(), Code::kTrimmed);
  EXPECT_EQ(Read(0, 10)->payload(), "v10");
  EXPECT_EQ(Write(0, Entry(3, "below the mark")).code(), Code::kTrimmed);

  auto tail = Call<proto::TailResponse>("log.tail", proto::TailRequest());
  ASSERT_TRUE(tail.ok());
  EXPECT_EQ(tail->local_tail(), 20u);
  EXPECT_EQ(tail->trim_mark(), 10u);
}

TEST_F(LogUnitTest, StatsCountGroupCommitsAndAnswerAnyEpoch) {
  for (uint64_t a = 0; a < 5; ++a) ASSERT_TRUE(Write(0, Entry(a, "v" + std::to_string(a))).ok());
  ASSERT_TRUE(Write(0, Entry(9, "x", "switches")).ok());
  ASSERT_TRUE(Seal(4).ok());

  // Epoch 0 is below the seal: log.tail would say WRONG_EPOCH, log.stats
  // (monitoring) answers.
  auto s = Call<proto::StatsResponse>("log.stats", proto::StatsRequest());
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->local_tail(), 10u);
  EXPECT_EQ(s->entries(), 6u);
  EXPECT_EQ(s->sealed_epoch(), 4u);
  EXPECT_EQ(s->segments(), 1u);
  EXPECT_GT(s->segment_bytes(), 0u);
  // One log.write at a time: each is its own group commit.
  EXPECT_EQ(s->commits(), 6u);
  EXPECT_EQ(s->commit_records(), 6u);
  EXPECT_EQ(s->commit_bytes(), s->segment_bytes());
  ASSERT_EQ(s->commit_bucket_le_us_size(), s->commit_bucket_counts_size());
  uint64_t counted = 0;
  for (uint64_t c : s->commit_bucket_counts()) counted += c;
  EXPECT_EQ(counted, 6u);
  EXPECT_EQ(s->commit_bucket_le_us(s->commit_bucket_le_us_size() - 1), UINT64_MAX);
  EXPECT_GE(s->commit_max_us() * 6, s->commit_sum_us());  // max is at least the mean
}

TEST_F(LogUnitTest, MalformedRequestIsRefusedAndChangesNothing) {
  auto [st, bytes] = CallRaw("log.write", std::string("\xff\xff\xff\xff\x0f garbage", 14));
  EXPECT_EQ(st.code(), Code::kMalformed);
  auto tail = Call<proto::TailResponse>("log.tail", proto::TailRequest());
  EXPECT_EQ(tail->entries(), 0u);
}

TEST_F(LogUnitTest, ConcurrentWritersGetExactlyOneWinnerPerAddress) {
  constexpr int kThreads = 8;
  constexpr uint64_t kAddresses = 300;
  std::atomic<int> wins[kAddresses] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t a = 0; a < kAddresses; ++a) {
        Status st = Write(0, Entry(a, "writer " + std::to_string(t)));
        if (st.ok()) {
          wins[a]++;
        } else {
          EXPECT_EQ(st.code(), Code::kAlreadyWritten) << st.ToString();
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (uint64_t a = 0; a < kAddresses; ++a) {
    EXPECT_EQ(wins[a].load(), 1) << "address " << a;
    auto r = Read(0, a);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->payload().rfind("writer ", 0), 0u);
  }
}

// Writes racing a seal: every write acknowledged at the old epoch is
// answered before the seal answers, and reads back below the seal's tail;
// no old-epoch write is answered OK after the seal.
TEST_F(LogUnitTest, SealOrdersRacingWrites) {
  std::atomic<bool> seal_answered{false};
  std::atomic<int> late_acks{0};
  std::atomic<uint64_t> next{0};
  std::vector<uint64_t> acked[4];
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < 400; ++i) {
        uint64_t a = next.fetch_add(1);
        proto::WriteRequest req;
        req.set_epoch(0);
        *req.mutable_entry() = Entry(a, "x");
        auto [st, bytes] = CallRaw("log.write", req.SerializeAsString(), [&](const Status& s) {
          if (s.ok() && seal_answered.load()) late_acks++;
        });
        if (st.ok()) {
          acked[t].push_back(a);
        } else {
          EXPECT_EQ(st.code(), Code::kWrongEpoch);
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  proto::SealRequest seal;
  seal.set_epoch(1);
  auto [st, bytes] =
      CallRaw("log.seal", seal.SerializeAsString(), [&](const Status&) { seal_answered = true; });
  ASSERT_TRUE(st.ok());
  proto::SealResponse s;
  ASSERT_TRUE(s.ParseFromString(bytes));
  for (auto& w : writers) w.join();
  EXPECT_EQ(late_acks.load(), 0);
  size_t total = 0;
  for (auto& v : acked) {
    total += v.size();
    for (uint64_t a : v) {
      EXPECT_TRUE(Read(1, a).ok()) << a;
      EXPECT_LT(a, s.local_tail());
    }
  }
  EXPECT_GT(total, 0u);
}

// Calls `method` over a transport channel and waits for the answer.
template <typename Resp, typename Req>
Result<Resp> CallOver(net::Channel& channel, const std::string& method, const Req& req) {
  std::promise<Result<Resp>> p;
  net::CallTyped<Resp>(channel, method, req, net::CallOptions{},
                       [&p](Result<Resp> r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

// log.reset over the in-process transport (encoded frames, as on TCP).
TEST_F(LogUnitTest, ResetRefusesOldEpochsWipesAndSeals) {
  net::InProcessNetwork network;
  auto server_side = network.MakeTransport("unit");
  auto client_side = network.MakeTransport("healer");
  auto server = server_side->Listen("lu:1", &registry_);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto channel = client_side->Connect((*server)->endpoint());
  auto reset = [&](uint64_t epoch) {
    proto::ResetRequest req;
    req.set_epoch(epoch);
    return CallOver<proto::ResetResponse>(*channel, "log.reset", req);
  };
  auto write = [&](uint64_t epoch, proto::LogEntry e) {
    proto::WriteRequest req;
    req.set_epoch(epoch);
    *req.mutable_entry() = std::move(e);
    return CallOver<proto::WriteResponse>(*channel, "log.write", req).status();
  };

  for (uint64_t a = 0; a < 50; ++a) ASSERT_TRUE(write(0, Entry(a, "old", "switches")).ok());
  ASSERT_TRUE(Seal(2).ok());

  // An older epoch is refused like any request, and changes nothing.
  auto refused = reset(1);
  ASSERT_EQ(refused.status().code(), Code::kWrongEpoch) << refused.status().ToString();
  ASSERT_TRUE(refused.status().current_epoch().has_value());
  EXPECT_EQ(*refused.status().current_epoch(), 2u);
  EXPECT_EQ(Read(2, 7)->payload(), "old");

  auto r = reset(3);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->sealed_epoch(), 3u);
  EXPECT_EQ(r->entries_dropped(), 50u);
  EXPECT_GT(r->bytes_dropped(), 50u * 3);
  EXPECT_EQ(Read(3, 7).status().code(), Code::kUnwritten);
  proto::TailRequest tail_req;
  tail_req.set_epoch(3);
  auto tail = Call<proto::TailResponse>("log.tail", tail_req);
  ASSERT_TRUE(tail.ok()) << tail.status().ToString();
  EXPECT_EQ(tail->entries(), 0u);
  EXPECT_EQ(tail->local_tail(), 0u);
  EXPECT_EQ(tail->trim_mark(), 0u);
  EXPECT_EQ(tail->sealed_epoch(), 3u);
  proto::StreamMapsRequest maps_req;
  maps_req.set_epoch(3);
  auto maps = Call<proto::StreamMapsResponse>("log.stream_maps", maps_req);
  ASSERT_TRUE(maps.ok());
  EXPECT_EQ(maps->streams_size(), 0);

  // Sealed at the reset's epoch; a write of the new epoch lands where the
  // old entries were.
  EXPECT_EQ(write(2, Entry(8, "stale")).code(), Code::kWrongEpoch);
  ASSERT_TRUE(write(3, Entry(7, "new")).ok());
  EXPECT_EQ(Read(3, 7)->payload(), "new");
  // A reset at the sealed epoch itself is allowed (a retry after a lost answer).
  auto again = reset(3);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->entries_dropped(), 1u);
  ASSERT_TRUE(write(3, Entry(7, "newer")).ok());

  server->reset();
  Reopen();
  EXPECT_EQ(Read(3, 7)->payload(), "newer");
  EXPECT_EQ(Read(3, 8).status().code(), Code::kUnwritten);
  EXPECT_EQ(Write(2, Entry(9, "stale after restart")).code(), Code::kWrongEpoch);
}

// Writes of the old epoch racing a reset: each is either admitted before
// the wipe (and wiped, answered before the reset answers) or refused with
// WRONG_EPOCH; none is acknowledged after the reset, none survives it.
TEST_F(LogUnitTest, ResetOrdersRacingWrites) {
  std::atomic<bool> reset_answered{false};
  std::atomic<int> late_acks{0};
  std::atomic<int> acks{0};
  std::atomic<uint64_t> next{0};
  std::vector<std::thread> writers;
  for (int t = 0; t < 4; ++t) {
    writers.emplace_back([&] {
      for (int i = 0; i < 400; ++i) {
        proto::WriteRequest req;
        req.set_epoch(0);
        *req.mutable_entry() = Entry(next.fetch_add(1), "x");
        auto [st, bytes] = CallRaw("log.write", req.SerializeAsString(), [&](const Status& s) {
          if (s.ok() && reset_answered.load()) late_acks++;
        });
        if (st.ok()) {
          acks++;
        } else {
          EXPECT_EQ(st.code(), Code::kWrongEpoch) << st.ToString();
        }
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(5));
  proto::ResetRequest reset;
  reset.set_epoch(1);
  auto [st, bytes] = CallRaw("log.reset", reset.SerializeAsString(),
                             [&](const Status&) { reset_answered = true; });
  ASSERT_TRUE(st.ok()) << st.ToString();
  proto::ResetResponse resp;
  ASSERT_TRUE(resp.ParseFromString(bytes));
  for (auto& w : writers) w.join();
  EXPECT_EQ(late_acks.load(), 0);
  EXPECT_GT(acks.load(), 0);
  EXPECT_EQ(resp.entries_dropped(), static_cast<uint64_t>(acks.load()));
  const uint64_t end = next.load();
  for (uint64_t a = 0; a < end; ++a) {
    ASSERT_EQ(Read(1, a).status().code(), Code::kUnwritten) << a;
  }
  EXPECT_TRUE(Write(1, Entry(0, "after")).ok());
}

}  // namespace
}  // namespace tally::log
