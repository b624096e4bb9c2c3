// log.stream_maps and SegmentStore::Streams: every stream a unit holds, with
// its address map, across reopen, trim and epochs.

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <future>
#include <map>

#include "log_unit_fixture.h"
#include "tally/base/address_map.h"
#include "tally/log/log_unit.h"
#include "tally/proto/logunit.pb.h"

namespace tally::log {
namespace {

class StreamMapsTest : public LogUnitTestBase {
 protected:
  void Write(uint64_t address, const std::vector<std::string>& streams) {
    proto::WriteRequest req;
    req.set_epoch(0);
    auto* e = req.mutable_entry();
    e->set_address(address);
    e->set_type(proto::DATA);
    e->set_payload("v" + std::to_string(address));
    for (const auto& name : streams) {
      StreamId id = StreamId::FromName(name);
      auto* s = e->add_streams();
      s->set_hi(id.hi);
      s->set_lo(id.lo);
    }
    auto r = Call<proto::WriteResponse>("log.write", req);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }

  // Stream name -> addresses, from log.stream_maps at `epoch`.
  Result<std::map<StreamId, std::vector<uint64_t>>> Maps(uint64_t epoch = 0) {
    proto::StreamMapsRequest req;
    req.set_epoch(epoch);
    auto r = Call<proto::StreamMapsResponse>("log.stream_maps", req);
    if (!r.ok()) return r.status();
    std::map<StreamId, std::vector<uint64_t>> out;
    for (const auto& m : r->streams()) {
      StreamId id{m.stream().hi(), m.stream().lo()};
      EXPECT_EQ(out.count(id), 0u) << "stream listed twice";
      auto addrs = DecodeAddresses(m.roaring64());
      if (!addrs.ok()) return addrs.status();
      for (Address a : *addrs) out[id].push_back(a.value());
    }
    return out;
  }
};

const StreamId kPorts = StreamId::FromName("ports");
const StreamId kRules = StreamId::FromName("rules");

TEST_F(StreamMapsTest, EmptyUnitHasNoStreams) {
  auto maps = Maps();
  ASSERT_TRUE(maps.ok()) << maps.status().ToString();
  EXPECT_TRUE(maps->empty());
  EXPECT_TRUE(unit_->store().Streams().empty());
}

TEST_F(StreamMapsTest, ListsEveryStreamWithItsAddresses) {
  Write(0, {"ports"});
  Write(1, {"rules", "ports"});
  Write(2, {});
  Write(7, {"rules"});
  auto maps = Maps();
  ASSERT_TRUE(maps.ok()) << maps.status().ToString();
  ASSERT_EQ(maps->size(), 2u);
  EXPECT_EQ((*maps)[kPorts], (std::vector<uint64_t>{0, 1}));
  EXPECT_EQ((*maps)[kRules], (std::vector<uint64_t>{1, 7}));
  std::vector<StreamId> streams = unit_->store().Streams();
  std::sort(streams.begin(), streams.end());
  std::vector<StreamId> want{kPorts, kRules};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(streams, want);
}

TEST_F(StreamMapsTest, SurvivesReopen) {
  Write(3, {"ports"});
  Write(4, {"rules"});
  Reopen();
  auto maps = Maps();
  ASSERT_TRUE(maps.ok()) << maps.status().ToString();
  EXPECT_EQ((*maps)[kPorts], (std::vector<uint64_t>{3}));
  EXPECT_EQ((*maps)[kRules], (std::vector<uint64_t>{4}));
}

TEST_F(StreamMapsTest, LeavesOutTrimmedAddressesAndEmptiedStreams) {
  Write(0, {"rules"});
  Write(1, {"ports"});
  Write(5, {"ports"});
  proto::TrimRequest trim;
  trim.set_address(2);
  ASSERT_TRUE(Call<proto::TrimResponse>("log.trim", trim).ok());
  auto maps = Maps();
  ASSERT_TRUE(maps.ok()) << maps.status().ToString();
  ASSERT_EQ(maps->size(), 1u);
  EXPECT_EQ((*maps)[kPorts], (std::vector<uint64_t>{5}));
}

TEST_F(StreamMapsTest, RefusesAnEpochOlderThanTheSeal) {
  Write(0, {"ports"});
  proto::SealRequest seal;
  seal.set_epoch(3);
  ASSERT_TRUE(Call<proto::SealResponse>("log.seal", seal).ok());
  auto old = Maps(2);
  ASSERT_FALSE(old.ok());
  EXPECT_EQ(old.status().code(), Code::kWrongEpoch);
  auto current = Maps(3);
  ASSERT_TRUE(current.ok()) << current.status().ToString();
  EXPECT_EQ((*current)[kPorts], (std::vector<uint64_t>{0}));
}

TEST_F(StreamMapsTest, MalformedRequestIsRefused) {
  const net::Handler* h = registry_.Find("log.stream_maps");
  ASSERT_NE(h, nullptr);
  std::promise<Status> p;
  (*h)(std::string("\xff\xff\xff", 3), [&p](Status st, std::string) { p.set_value(st); });
  EXPECT_EQ(p.get_future().get().code(), Code::kMalformed);
}

}  // namespace
}  // namespace tally::log
