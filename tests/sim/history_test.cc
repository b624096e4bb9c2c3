// The simulation's invariant checker, on fabricated histories: each
// invariant is caught when broken, and a clean history passes.

#include "history.h"

#include <gtest/gtest.h>

namespace tally::sim {
namespace {

proto::LogEntry Data(uint64_t address, const std::string& payload) {
  proto::LogEntry e;
  e.set_address(address);
  e.set_type(proto::DATA);
  e.set_payload(payload);
  return e;
}

proto::LogEntry Hole(uint64_t address) {
  proto::LogEntry e;
  e.set_address(address);
  e.set_type(proto::HOLE);
  return e;
}

bool Mentions(const std::vector<std::string>& v, const std::string& what) {
  for (const auto& s : v) {
    if (s.find(what) != std::string::npos) return true;
  }
  return false;
}

TEST(HistoryTest, CleanHistoryPasses) {
  History h;
  h.Acked("a", 0);
  h.Acked("b", 2);
  h.AppendFailed("c", Timeout("sequencer did not answer"));
  h.Read("r1", 0, Data(0, "a"));
  h.Read("r2", 1, Hole(1));
  h.Read("r1", 1, Hole(1));
  h.Read("checker", 2, Data(2, "b"));
  h.ReadFailed("r2", 5, Unwritten("above the tail"));
  h.Replica("u1", 0, Data(0, "a"));
  EXPECT_TRUE(h.Check(3).empty()) << h.Check(3).front();
  EXPECT_EQ(h.holes(), 1u);
  EXPECT_EQ(h.acked(), 2u);
}

TEST(HistoryTest, AddressAckedTwice) {
  History h;
  h.Acked("a", 7);
  h.Acked("b", 7);
  h.Read("c", 7, Data(7, "a"));
  EXPECT_TRUE(Mentions(h.Check(8), "acknowledged twice"));
}

TEST(HistoryTest, ReadersDisagree) {
  History h;
  h.Read("r1", 3, Data(3, "x"));
  h.Read("r2", 3, Hole(3));
  EXPECT_TRUE(Mentions(h.Check(0), "r1 read 'x'"));
}

TEST(HistoryTest, AcknowledgedAppendLostOrOverwrittenByHole) {
  History lost;
  lost.Acked("a", 0);
  EXPECT_TRUE(Mentions(lost.Check(0), "never read back"));

  History holed;
  holed.Acked("a", 0);
  holed.Read("checker", 0, Hole(0));
  EXPECT_TRUE(Mentions(holed.Check(1), "was read as a hole"));
}

TEST(HistoryTest, PayloadTwiceInTheLog) {
  History h;
  h.Read("c", 0, Data(0, "same"));
  h.Read("c", 1, Data(1, "same"));
  EXPECT_TRUE(Mentions(h.Check(2), "in the log twice"));
}

TEST(HistoryTest, UnsettledAddressBelowTail) {
  History h;
  h.Read("c", 0, Data(0, "a"));
  EXPECT_TRUE(Mentions(h.Check(2), "address 1 is below the final tail"));
}

TEST(HistoryTest, ReplicaDisagreesOrMissing) {
  History h;
  h.Read("c", 0, Data(0, "a"));
  h.Replica("u2", 0, Data(0, "b"));
  EXPECT_TRUE(Mentions(h.Check(1), "u2 holds 'b'"));

  History m;
  m.Read("c", 0, Data(0, "a"));
  m.ReplicaMissing("u3", 0, Unwritten("nothing there"));
  EXPECT_TRUE(Mentions(m.Check(1), "u3 lacks address 0"));
}

TEST(HistoryTest, UnexplainedErrors) {
  History h;
  h.AppendFailed("a", Internal("replicas disagree"));
  h.ReadFailed("r", 0, Corruption("bad checksum"));
  const auto v = h.Check(0);
  EXPECT_TRUE(Mentions(v, "append of 'a' failed"));
  EXPECT_TRUE(Mentions(v, "r read of address 0 failed"));
}

TEST(HistoryTest, IoErrorsOnlyWhenDiskFaultsAreInjected) {
  History plain;
  plain.AppendFailed("a", IoError("sync failed"));
  EXPECT_TRUE(Mentions(plain.Check(0), "append of 'a' failed"));

  History faulty;
  faulty.AllowIoErrors();
  faulty.AppendFailed("a", IoError("sync failed"));
  faulty.ReadFailed("r", 0, IoError("sync failed"));
  EXPECT_TRUE(faulty.Check(0).empty());
}

TEST(HistoryTest, EntryStampedWithAnotherAddress) {
  History h;
  h.Read("r", 4, Data(5, "a"));
  EXPECT_TRUE(Mentions(h.Check(0), "stamped address 5"));
}

TEST(HistoryTest, EpochsThatOnlyGrowPass) {
  History h;
  h.LayoutCommitted("bootstrap", 0, "L0");
  h.LayoutCommitted("node-0", 1, "L1");
  h.LayoutCommitted("node-1", 1, "L1");
  h.LayoutCommitted("node-1", 2, "L2");
  h.LayoutAdopted("client-0", 0, "L0");
  h.LayoutAdopted("client-0", 0, "L0");  // samples repeat
  h.LayoutAdopted("client-0", 2, "L2");  // epochs may be skipped
  h.LayoutAdopted("client-1", 1, "L1");
  h.EpochObserved("node-0 layout server", 1);
  h.EpochObserved("node-0 layout server", 1);
  h.EpochObserved("node-0 layout server", 2);
  h.Sealed("node-1", 2);
  h.Sealed("node-1", 3);  // the next epoch's seal, before its agreement
  EXPECT_TRUE(h.Check(0).empty()) << h.Check(0).front();
  EXPECT_EQ(h.newest_committed_epoch(), 2u);
  EXPECT_EQ(h.epoch_observations(), 7u);
}

TEST(HistoryTest, AnEpochGoingBack) {
  History h;
  h.EpochObserved("node-2 layout server", 3);
  h.EpochObserved("node-2 layout server", 2);
  EXPECT_TRUE(Mentions(h.Check(0), "node-2 layout server went back from epoch 3 to epoch 2"));

  History c;
  c.LayoutCommitted("node-0", 1, "L1");
  c.LayoutCommitted("node-0", 2, "L2");
  c.LayoutAdopted("client-0", 2, "L2");
  c.LayoutAdopted("client-0", 1, "L1");
  EXPECT_TRUE(Mentions(c.Check(0), "client-0 went back from epoch 2 to epoch 1"));

  History s;
  s.LayoutCommitted("node-0", 4, "L4");
  s.Sealed("node-1", 4);
  s.Sealed("node-1", 3);  // e.g. a seal lost in a restart
  EXPECT_TRUE(Mentions(s.Check(0), "node-1 seal went back from epoch 4 to epoch 3"));
}

TEST(HistoryTest, TwoLayoutsCommittedForOneEpoch) {
  History h;
  h.LayoutCommitted("node-0", 1, "without node-1");
  h.LayoutCommitted("node-2", 1, "without node-0");
  EXPECT_TRUE(Mentions(h.Check(0), "epoch 1 committed differently by node-0 and node-2"));
}

TEST(HistoryTest, RunningAnEpochThatWasNotCommitted) {
  History h;
  h.LayoutCommitted("bootstrap", 0, "L0");
  h.LayoutCommitted("node-0", 1, "L1");
  h.LayoutAdopted("client-0", 2, "L2");
  EXPECT_TRUE(Mentions(h.Check(0), "client-0 ran epoch 2 but no layout server committed it"));

  History other;
  other.LayoutCommitted("node-1", 1, "L1");
  other.LayoutAdopted("client-1", 1, "L1 proposed by a loser");
  EXPECT_TRUE(Mentions(other.Check(0), "client-1 ran a layout of epoch 1 that differs"));

  History two;
  two.LayoutCommitted("node-1", 1, "L1");
  two.LayoutAdopted("client-2", 1, "L1");
  two.LayoutAdopted("client-2", 1, "L1'");
  EXPECT_TRUE(Mentions(two.Check(0), "client-2 ran two different layouts of epoch 1"));
}

TEST(HistoryTest, ASealAheadOfAgreement) {
  History h;
  h.LayoutCommitted("node-0", 1, "L1");
  h.Sealed("node-2", 3);
  EXPECT_TRUE(
      Mentions(h.Check(0), "node-2 is sealed at epoch 3 but the newest committed epoch is 1"));
}

}  // namespace
}  // namespace tally::sim
