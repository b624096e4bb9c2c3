// The chain protocol (chain.cc) over a fake ReplicaIo: no sockets, no
// threads, virtual time.

#include "chain.h"

#include <gtest/gtest.h>

#include <map>

#include "rpc.h"

namespace tally::client::internal {
namespace {

// Units as maps of address -> entry; time advances only by SleepNanos.
class FakeIo final : public ReplicaIo {
 public:
  Result<std::vector<Status>> WriteBatch(const std::string& unit,
                                         const std::vector<proto::LogEntry>& entries) override {
    batch_calls[unit]++;
    if (auto f = fail_next_batch.find(unit); f != fail_next_batch.end()) {
      Status st = f->second;  // the whole call fails, once
      fail_next_batch.erase(f);
      return st;
    }
    std::vector<Status> out;
    for (const auto& e : entries) out.push_back(Write(unit, e));
    return out;
  }
  Status Write(const std::string& unit, const proto::LogEntry& entry) override {
    writes++;
    if (entry.address() < trim_marks[unit]) return Trimmed("below the trim mark");
    auto& held = units[unit];
    if (held.count(entry.address()) != 0) return AlreadyWritten("taken");
    held[entry.address()] = entry;
    return Status::OK();
  }
  Result<proto::LogEntry> Read(const std::string& unit, Address address) override {
    if (address.value() < trim_marks[unit]) return Trimmed("below the trim mark");
    auto& held = units[unit];
    auto it = held.find(address.value());
    if (it == held.end()) return Unwritten("nothing");
    return it->second;
  }
  Status FillHole(const std::string& unit, Address address) override {
    proto::LogEntry hole;
    hole.set_address(address.value());
    hole.set_type(proto::HOLE);
    return Write(unit, hole);
  }
  Result<Address> GlobalTail() override { return global_tail; }
  Epoch epoch() override { return Epoch(0); }
  int64_t NowNanos() override { return now; }
  void SleepNanos(int64_t nanos) override { now += nanos; }

  std::map<std::string, std::map<uint64_t, proto::LogEntry>> units;
  std::map<std::string, uint64_t> trim_marks;
  Address global_tail{100};
  int64_t now = 0;
  int writes = 0;
  std::map<std::string, int> batch_calls;
  std::map<std::string, Status> fail_next_batch;
};

proto::LogEntry Data(uint64_t a, const std::string& payload) {
  proto::LogEntry e;
  e.set_address(a);
  e.set_type(proto::DATA);
  e.set_payload(payload);
  return e;
}

const Chain kChain = {"h", "m", "t"};

TEST(ChainTest, WriteGoesHeadToTail) {
  FakeIo io;
  auto st = WriteChain(io, kChain, {Data(1, "x"), Data(2, "y")}, nullptr);
  ASSERT_EQ(st.size(), 2u);
  EXPECT_TRUE(st[0].ok() && st[1].ok());
  for (const auto& u : kChain) EXPECT_EQ(io.units[u].size(), 2u) << u;
}

TEST(ChainTest, RetryOfOwnWriteCarriesOn) {
  FakeIo io;
  io.units["h"][1] = Data(1, "x");  // an earlier attempt of ours reached the head
  auto st = WriteChain(io, kChain, {Data(1, "x")}, nullptr);
  EXPECT_TRUE(st[0].ok()) << st[0].ToString();
  EXPECT_EQ(io.units["t"][1].payload(), "x");
}

TEST(ChainTest, HoleAtHeadMeansLostRace) {
  FakeIo io;
  ASSERT_TRUE(io.FillHole("h", Address(1)).ok());
  ChainCounters counters;
  auto st = WriteChain(io, kChain, {Data(1, "x")}, &counters);
  EXPECT_EQ(st[0].code(), Code::kAlreadyWritten) << st[0].ToString();
  EXPECT_EQ(counters.lost_races.load(), 1u);
  EXPECT_TRUE(io.units["m"].empty()) << "a lost write must not go down the chain";
}

TEST(ChainTest, AUnitThatRefusedSomeEntriesIsNotSentTheBatchAgain) {
  FakeIo io;
  ASSERT_TRUE(io.FillHole("h", Address(2)).ok());
  auto st = WriteChain(io, kChain, {Data(1, "x"), Data(2, "y"), Data(3, "z")}, nullptr);
  EXPECT_TRUE(st[0].ok() && st[2].ok());
  EXPECT_EQ(st[1].code(), Code::kAlreadyWritten) << st[1].ToString();
  // The head's answer on the fast path is its answer: one call per unit.
  EXPECT_EQ(io.batch_calls["h"], 1);
  EXPECT_EQ(io.batch_calls["m"], 1);
  EXPECT_EQ(io.batch_calls["t"], 1);
  EXPECT_EQ(io.units["t"].size(), 2u);
  EXPECT_EQ(io.units["t"].count(2), 0u);
}

TEST(ChainTest, ATransientFailureOnTheFastPathIsRetriedFromThatUnit) {
  FakeIo io;
  io.fail_next_batch["m"] = Unavailable("connection reset");
  auto st = WriteChain(io, kChain, {Data(1, "x"), Data(2, "y")}, nullptr);
  EXPECT_TRUE(st[0].ok() && st[1].ok()) << st[0].ToString() << " " << st[1].ToString();
  EXPECT_EQ(io.batch_calls["h"], 1) << "the head took them: not sent again";
  EXPECT_EQ(io.batch_calls["m"], 2) << "the failed call, then its retry";
  EXPECT_EQ(io.batch_calls["t"], 1);
  for (const auto& u : kChain) EXPECT_EQ(io.units[u].size(), 2u) << u;
}

TEST(ChainTest, AnEpochErrorOnTheFastPathFailsEveryEntryWithoutResending) {
  FakeIo io;
  io.fail_next_batch["t"] = WrongEpoch("sealed at epoch 3");
  auto st = WriteChain(io, kChain, {Data(1, "x"), Data(2, "y")}, nullptr);
  for (const auto& s : st) EXPECT_EQ(s.code(), Code::kWrongEpoch) << s.ToString();
  EXPECT_EQ(io.batch_calls["t"], 1) << "the epoch error is final: not sent again";
  EXPECT_TRUE(io.units["t"].empty());
}

TEST(ChainTest, DifferentEntryDownTheChainIsInternal) {
  FakeIo io;
  io.units["m"][1] = Data(1, "other");
  auto st = WriteChain(io, kChain, {Data(1, "x")}, nullptr);
  EXPECT_EQ(st[0].code(), Code::kInternal) << st[0].ToString();
  EXPECT_NE(st[0].message().find("address 1"), std::string::npos);
}

TEST(ChainTest, ReadWaitsThenFillsAHoleThroughTheChain) {
  FakeIo io;
  ReadOptions ro;
  ro.hole_fill_timeout_nanos = 200'000'000;
  ChainCounters counters;
  auto e = ReadChain(io, kChain, Address(5), ro, &counters);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->type(), proto::HOLE);
  EXPECT_GE(io.now, ro.hole_fill_timeout_nanos);
  for (const auto& u : kChain) EXPECT_EQ(io.units[u][5].type(), proto::HOLE) << u;
  EXPECT_EQ(counters.holes_filled.load(), 1u);
}

TEST(ChainTest, ReadAboveGlobalTailIsUnwrittenAtOnce) {
  FakeIo io;
  auto e = ReadChain(io, kChain, Address(100), ReadOptions(), nullptr);
  EXPECT_EQ(e.status().code(), Code::kUnwritten);
  EXPECT_EQ(io.now, 0);
  EXPECT_EQ(io.writes, 0);
}

TEST(ChainTest, ReadCompletesFromTheHead) {
  FakeIo io;
  io.units["h"][3] = Data(3, "half");
  auto e = ReadChain(io, kChain, Address(3), ReadOptions(), nullptr);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->payload(), "half");
  EXPECT_EQ(io.units["t"][3].payload(), "half");
  EXPECT_EQ(io.now, 0) << "no wait when the head holds the entry";
}

// A trim reaches the units one by one: whichever of tail and head has the
// mark already, the read answers TRIMMED and writes nothing.
TEST(ChainTest, TrimmedAtTheTailIsNeverCompleted) {
  FakeIo io;
  io.units["h"][3] = Data(3, "old");
  io.trim_marks["t"] = 10;
  ChainCounters counters;
  auto e = ReadChain(io, kChain, Address(3), ReadOptions(), &counters);
  EXPECT_EQ(e.status().code(), Code::kTrimmed) << e.status().ToString();
  EXPECT_EQ(io.writes, 0);
  EXPECT_EQ(counters.chains_completed.load(), 0u);
}

TEST(ChainTest, TrimmedAtTheHeadIsNeverHoleFilled) {
  FakeIo io;
  io.trim_marks["h"] = 10;  // the tail is not trimmed yet and has nothing at 3
  ChainCounters counters;
  auto e = ReadChain(io, kChain, Address(3), ReadOptions(), &counters);
  EXPECT_EQ(e.status().code(), Code::kTrimmed) << e.status().ToString();
  EXPECT_EQ(io.writes, 0);
  EXPECT_EQ(io.now, 0) << "no wait for a writer below the mark";
  EXPECT_EQ(counters.holes_filled.load(), 0u);
}

// A log.write_batch answer: all_ok stands for one OK per entry; otherwise
// one result per entry; anything else is Malformed, never a guess.
TEST(WriteBatchResultsTest, AllOkExpandsAndMismatchesAreMalformed) {
  proto::WriteBatchResponse all;
  all.set_all_ok(true);
  auto r = WriteBatchResults("u1", all, 3);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 3u);
  for (const Status& st : *r) EXPECT_TRUE(st.ok());

  proto::WriteBatchResponse each;
  each.add_results();
  each.add_results()->set_code(proto::ALREADY_WRITTEN);
  r = WriteBatchResults("u1", each, 2);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)[0].ok());
  EXPECT_EQ((*r)[1].code(), Code::kAlreadyWritten);

  EXPECT_EQ(WriteBatchResults("u1", each, 3).status().code(), Code::kMalformed);
  proto::WriteBatchResponse both = each;
  both.set_all_ok(true);
  auto bad = WriteBatchResults("u1", both, 2);
  EXPECT_EQ(bad.status().code(), Code::kMalformed);
  EXPECT_NE(bad.status().message().find("u1"), std::string::npos);
  EXPECT_EQ(WriteBatchResults("u1", proto::WriteBatchResponse(), 1).status().code(),
            Code::kMalformed);
}

}  // namespace
}  // namespace tally::client::internal
