#include "tally/sequencer/sequencer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <thread>
#include <utility>
#include <vector>

namespace tally::sequencer {
namespace {

const StreamId kA = StreamId::FromName("a");
const StreamId kB = StreamId::FromName("b");
const StreamId kC = StreamId::FromName("c");

std::vector<Address> Range(uint64_t from, uint64_t to) {
  std::vector<Address> out;
  for (uint64_t a = from; a < to; ++a) out.emplace_back(a);
  return out;
}

std::vector<Address> Addrs(const Sequencer& s, Epoch e, StreamId id, Address from = Address(0),
                           Address to = kNoAddress) {
  auto bytes = s.StreamAddresses(e, id, from, to);
  EXPECT_TRUE(bytes.ok()) << bytes.status().ToString();
  if (!bytes.ok()) return {};
  auto addrs = DecodeAddresses(*bytes);
  EXPECT_TRUE(addrs.ok()) << addrs.status().ToString();
  return addrs.ok() ? *addrs : std::vector<Address>{};
}

// A sequencer bootstrapped at epoch 1 with an empty log.
class SequencerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(seq_.Bootstrap(e1_, Address(0), {}).ok()); }
  Sequencer seq_;
  const Epoch e1_{1};
};

TEST(SequencerFresh, EveryCallButBootstrapNeedsBootstrap) {
  Sequencer s;
  const std::string want = "sequencer not bootstrapped; run cluster bootstrap or wait for failover";
  auto next = s.Next(Epoch(0), 1, {});
  ASSERT_EQ(next.status().code(), Code::kUnavailable);
  EXPECT_EQ(next.status().message(), want);
  EXPECT_EQ(s.Tail(Epoch(0), {}).status().code(), Code::kUnavailable);
  EXPECT_EQ(s.StreamAddresses(Epoch(0), kA, Address(0), kNoAddress).status().code(),
            Code::kUnavailable);
  EXPECT_FALSE(s.Stats().bootstrapped);
}

TEST_F(SequencerTest, TokensAreContiguousAndNeverRepeat) {
  auto g1 = seq_.Next(e1_, 1, {});
  auto g2 = seq_.Next(e1_, 5, {});
  auto g3 = seq_.Next(e1_, 1, {});
  ASSERT_TRUE(g1.ok() && g2.ok() && g3.ok());
  EXPECT_EQ(g1->first, Address(0));
  EXPECT_EQ(g1->count, 1u);
  EXPECT_EQ(g2->first, Address(1));
  EXPECT_EQ(g2->count, 5u);
  EXPECT_EQ(g3->first, Address(6));
  EXPECT_EQ(seq_.Tail(e1_, {})->global_tail, Address(7));
  EXPECT_EQ(seq_.Stats().tokens_issued, 7u);
}

TEST_F(SequencerTest, TailIssuesNothing) {
  ASSERT_TRUE(seq_.Next(e1_, 10, std::vector{kA}).ok());
  for (int i = 0; i < 5; ++i) {
    auto t = seq_.Tail(e1_, std::vector{kA, kB});
    ASSERT_TRUE(t.ok());
    EXPECT_EQ(t->global_tail, Address(10));
    EXPECT_EQ(t->streams, (std::vector<StreamTail>{{kA, Address(9)}, {kB, kNoAddress}}));
  }
  EXPECT_EQ(seq_.Next(e1_, 1, {})->first, Address(10));
  EXPECT_EQ(Addrs(seq_, e1_, kA), Range(0, 10));
}

TEST_F(SequencerTest, ConcurrentGrantsPartitionTheAddressSpace) {
  constexpr int kThreads = 8;
  constexpr int kRequests = 3000;
  std::vector<std::vector<std::pair<uint64_t, uint32_t>>> grants(kThreads);
  std::vector<StreamId> own(kThreads);
  for (int t = 0; t < kThreads; ++t) own[t] = StreamId{7, static_cast<uint64_t>(t)};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kRequests; ++i) {
        uint32_t count = 1 + static_cast<uint32_t>((i * 7 + t) % 13);
        std::vector<StreamId> streams = {own[t]};
        if (i % 2 == 0) streams.push_back(kA);  // a shared stream
        auto g = seq_.Next(e1_, count, streams);
        ASSERT_TRUE(g.ok()) << g.status().ToString();
        ASSERT_EQ(g->count, count);
        grants[t].emplace_back(g->first.value(), count);
      }
    });
  }
  for (auto& th : threads) th.join();

  // The union of all grants is exactly [0, N), with no overlap.
  std::vector<std::pair<uint64_t, uint32_t>> all;
  for (const auto& g : grants) all.insert(all.end(), g.begin(), g.end());
  std::sort(all.begin(), all.end());
  uint64_t next = 0;
  for (const auto& [first, count] : all) {
    ASSERT_EQ(first, next) << "gap or overlap at " << first;
    next += count;
  }
  EXPECT_EQ(seq_.Tail(e1_, {})->global_tail, Address(next));

  // Every thread's stream holds exactly its grants; the shared stream the
  // even-numbered requests of all threads.
  std::vector<Address> shared;
  for (int t = 0; t < kThreads; ++t) {
    std::vector<Address> want;
    for (int i = 0; i < kRequests; ++i) {
      auto [first, count] = grants[t][i];
      for (uint64_t a = first; a < first + count; ++a) {
        want.emplace_back(a);
        if (i % 2 == 0) shared.emplace_back(a);
      }
    }
    EXPECT_EQ(Addrs(seq_, e1_, own[t]), want) << "thread " << t;
  }
  std::sort(shared.begin(), shared.end());
  EXPECT_EQ(Addrs(seq_, e1_, kA), shared);
}

TEST_F(SequencerTest, StreamTailsAndMaps) {
  auto g1 = seq_.Next(e1_, 3, std::vector{kA});  // 0..2
  ASSERT_TRUE(g1.ok());
  EXPECT_EQ(g1->previous, (std::vector<StreamTail>{{kA, kNoAddress}}));
  auto g2 = seq_.Next(e1_, 2, std::vector{kA, kB});  // 3..4 in both
  ASSERT_TRUE(g2.ok());
  EXPECT_EQ(g2->previous, (std::vector<StreamTail>{{kA, Address(2)}, {kB, kNoAddress}}));
  ASSERT_TRUE(seq_.Next(e1_, 1, {}).ok());       // 5 in no stream
  auto g3 = seq_.Next(e1_, 1, std::vector{kB});  // 6
  ASSERT_TRUE(g3.ok());
  EXPECT_EQ(g3->previous, (std::vector<StreamTail>{{kB, Address(4)}}));

  auto t = seq_.Tail(e1_, std::vector{kA, kB, kC});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->global_tail, Address(7));
  EXPECT_EQ(t->streams,
            (std::vector<StreamTail>{{kA, Address(4)}, {kB, Address(6)}, {kC, kNoAddress}}));

  EXPECT_EQ(Addrs(seq_, e1_, kA), Range(0, 5));
  EXPECT_EQ(Addrs(seq_, e1_, kB), (std::vector<Address>{Address(3), Address(4), Address(6)}));
  EXPECT_EQ(Addrs(seq_, e1_, kA, Address(1), Address(4)), Range(1, 4));
  EXPECT_EQ(Addrs(seq_, e1_, kB, Address(5), Address(5)), std::vector<Address>{});
  EXPECT_EQ(Addrs(seq_, e1_, kC), std::vector<Address>{});
  EXPECT_EQ(seq_.StreamAddresses(e1_, kA, Address(4), Address(3)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(seq_.Stats().streams, 2u);
}

TEST_F(SequencerTest, InvalidRequestsChangeNothing) {
  for (uint32_t bad : {0u, kMaxTokensPerGrant + 1}) {
    auto g = seq_.Next(e1_, bad, {});
    ASSERT_EQ(g.status().code(), Code::kInvalidArgument);
    EXPECT_NE(g.status().message().find("token count " + std::to_string(bad)), std::string::npos)
        << g.status().message();
  }
  EXPECT_EQ(seq_.Next(e1_, 1, std::vector{kA, kB, kA}).status().code(), Code::kInvalidArgument);
  std::vector<StreamId> many(kMaxStreamsPerRequest + 1);
  for (size_t i = 0; i < many.size(); ++i) many[i] = StreamId{1, i};
  EXPECT_EQ(seq_.Next(e1_, 1, many).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(seq_.Tail(e1_, many).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(seq_.Tail(e1_, {})->global_tail, Address(0));
  EXPECT_EQ(Addrs(seq_, e1_, kA), std::vector<Address>{});

  auto max = seq_.Next(e1_, kMaxTokensPerGrant, std::vector{kA});
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(Addrs(seq_, e1_, kA), Range(0, kMaxTokensPerGrant));
}

TEST(SequencerEpochs, FencingAttachesTheCurrentEpoch) {
  Sequencer s;
  ASSERT_TRUE(s.Bootstrap(Epoch(3), Address(0), {}).ok());
  for (Epoch e : {Epoch(2), Epoch(4)}) {
    auto next = s.Next(e, 1, {});
    ASSERT_EQ(next.status().code(), Code::kWrongEpoch);
    EXPECT_EQ(next.status().current_epoch(), 3u);
    EXPECT_NE(next.status().message().find("epoch 3"), std::string::npos);
    EXPECT_EQ(s.Tail(e, {}).status().current_epoch(), 3u);
    EXPECT_EQ(s.StreamAddresses(e, kA, Address(0), kNoAddress).status().current_epoch(), 3u);
  }
  // A bootstrap must move the epoch forward.
  for (Epoch e : {Epoch(2), Epoch(3)}) {
    auto b = s.Bootstrap(e, Address(0), {});
    ASSERT_EQ(b.status().code(), Code::kWrongEpoch);
    EXPECT_EQ(b.status().current_epoch(), 3u);
  }
  EXPECT_EQ(s.Next(Epoch(3), 1, {})->first, Address(0));
  ASSERT_TRUE(s.Bootstrap(Epoch(4), Address(0), {}).ok());
  EXPECT_EQ(s.Next(Epoch(3), 1, {}).status().current_epoch(), 4u);
  EXPECT_EQ(s.Next(Epoch(4), 1, {})->first, Address(1));
  EXPECT_EQ(s.Stats().epoch, Epoch(4));
}

TEST(SequencerBootstrap, RebuildsFromStreamMapsAndContinuesAfterTheOldTail) {
  // The old sequencer, as the log units saw it before it failed.
  Sequencer old;
  ASSERT_TRUE(old.Bootstrap(Epoch(1), Address(0), {}).ok());
  for (int i = 0; i < 50; ++i) {
    std::vector<StreamId> streams = {i % 2 ? kA : kB};
    if (i % 5 == 0) streams.push_back(kC);
    ASSERT_TRUE(old.Next(Epoch(1), 1 + i % 4, streams).ok());
  }
  auto old_tails = old.Tail(Epoch(1), std::vector{kA, kB, kC});
  ASSERT_TRUE(old_tails.ok());
  std::vector<StreamSnapshot> maps;
  for (StreamId id : {kA, kB, kC}) {
    auto bytes = old.StreamAddresses(Epoch(1), id, Address(0), kNoAddress);
    ASSERT_TRUE(bytes.ok());
    maps.push_back({id, *bytes});
  }

  Sequencer fresh;
  auto adopted = fresh.Bootstrap(Epoch(2), old_tails->global_tail, maps);
  ASSERT_TRUE(adopted.ok()) << adopted.status().ToString();
  EXPECT_EQ(*adopted, old_tails->global_tail);
  auto tails = fresh.Tail(Epoch(2), std::vector{kA, kB, kC});
  ASSERT_TRUE(tails.ok());
  EXPECT_EQ(tails->global_tail, old_tails->global_tail);
  EXPECT_EQ(tails->streams, old_tails->streams);
  for (StreamId id : {kA, kB, kC}) EXPECT_EQ(Addrs(fresh, Epoch(2), id), Addrs(old, Epoch(1), id));

  // The first token of the new epoch follows the old tail; backpointers
  // continue the rebuilt streams.
  auto g = fresh.Next(Epoch(2), 2, std::vector{kA});
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->first, old_tails->global_tail);
  EXPECT_EQ(g->previous[0].tail, old_tails->streams[0].tail);
  auto a = Addrs(fresh, Epoch(2), kA);
  EXPECT_EQ(a.back(), Address(g->first.value() + 1));
}

TEST(SequencerBootstrap, NeverIssuesAnAddressTwice) {
  // A stream index ahead of the reported tail: the map wins.
  Sequencer s;
  auto adopted = s.Bootstrap(Epoch(1), Address(10),
                             {{kA, EncodeAddresses(std::vector{Address(3), Address(99)})}});
  ASSERT_TRUE(adopted.ok());
  EXPECT_EQ(*adopted, Address(100));
  EXPECT_EQ(s.Tail(Epoch(1), std::vector{kA})->streams[0].tail, Address(99));
  EXPECT_EQ(s.Next(Epoch(1), 1, {})->first, Address(100));
  // Re-bootstrapped with a lower tail, this process keeps going up.
  adopted = s.Bootstrap(Epoch(2), Address(5), {});
  ASSERT_TRUE(adopted.ok());
  EXPECT_EQ(*adopted, Address(101));
  EXPECT_EQ(s.Next(Epoch(2), 1, {})->first, Address(101));
  // The maps are replaced, not merged.
  EXPECT_EQ(s.Tail(Epoch(2), std::vector{kA})->streams[0].tail, kNoAddress);
}

TEST(SequencerBootstrap, BadMapsAreRefusedAndChangeNothing) {
  Sequencer s;
  const std::string good = EncodeAddresses(std::vector{Address(1)});
  const std::vector<std::string> bad = {"", "abc", std::string(64, '\xff'), good + "x",
                                        good.substr(0, good.size() - 1)};
  for (const std::string& bytes : bad) {
    auto b = s.Bootstrap(Epoch(1), Address(0), {{kA, good}, {kB, bytes}});
    ASSERT_EQ(b.status().code(), Code::kMalformed) << bytes.size();
    EXPECT_NE(b.status().message().find(kB.ToHex()), std::string::npos);
    EXPECT_FALSE(s.Stats().bootstrapped);
  }
  auto dup = s.Bootstrap(Epoch(1), Address(0), {{kA, good}, {kA, good}});
  EXPECT_EQ(dup.status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(s.Stats().bootstrapped);

  ASSERT_TRUE(s.Bootstrap(Epoch(1), Address(0), {{kA, good}}).ok());
  EXPECT_EQ(s.Bootstrap(Epoch(2), Address(0), {{kA, "junk"}}).status().code(), Code::kMalformed);
  EXPECT_EQ(s.Stats().epoch, Epoch(1));
  EXPECT_EQ(s.Tail(Epoch(1), std::vector{kA})->streams[0].tail, Address(1));
}

TEST(SequencerMaps, BatchesAcrossChunkBoundariesAndCompactMaps) {
  Sequencer s;
  const uint64_t base = (uint64_t{1} << 32) - 10;
  ASSERT_TRUE(s.Bootstrap(Epoch(1), Address(base), {}).ok());
  ASSERT_TRUE(s.Next(Epoch(1), 100, std::vector{kA}).ok());
  EXPECT_EQ(Addrs(s, Epoch(1), kA), Range(base, base + 100));
  EXPECT_EQ(Addrs(s, Epoch(1), kA, Address(base + 5), Address(base + 15)),
            Range(base + 5, base + 15));

  // A million contiguous tokens of one stream are a few runs.
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(s.Next(Epoch(1), 1000, std::vector{kB}).ok());
  EXPECT_LT(s.Stats().map_bytes, 4096u);
  EXPECT_EQ(Addrs(s, Epoch(1), kB).size(), 1000000u);
}

TEST_F(SequencerTest, MapsMatchAModelUnderRandomGrants) {
  // Random counts exercise both the one-by-one and the bulk range paths,
  // random stream sets both contiguous runs and interleavings.
  std::mt19937_64 rng(20240611);
  const std::vector<StreamId> ids = {kA, kB, kC, StreamId{1, 1}, StreamId{1, 2}};
  std::vector<std::vector<Address>> model(ids.size());
  uint64_t next = 0;
  for (int i = 0; i < 3000; ++i) {
    uint32_t count = 1 + static_cast<uint32_t>(rng() % (i % 3 == 0 ? 300 : 8));
    std::vector<StreamId> streams;
    std::vector<size_t> which;
    for (size_t s = 0; s < ids.size(); ++s) {
      if (rng() % 3 == 0) {
        streams.push_back(ids[s]);
        which.push_back(s);
      }
    }
    auto g = seq_.Next(e1_, count, streams);
    ASSERT_TRUE(g.ok());
    ASSERT_EQ(g->first, Address(next));
    for (size_t k = 0; k < which.size(); ++k) {
      auto& m = model[which[k]];
      EXPECT_EQ(g->previous[k].tail, m.empty() ? kNoAddress : m.back());
      for (uint64_t a = next; a < next + count; ++a) m.emplace_back(a);
    }
    next += count;
    if (i % 500 == 0) {
      EXPECT_EQ(Addrs(seq_, e1_, ids[i % ids.size()]), model[i % ids.size()]);
    }
  }
  for (size_t s = 0; s < ids.size(); ++s) EXPECT_EQ(Addrs(seq_, e1_, ids[s]), model[s]);
}

TEST(SequencerMaps, SparseStreamsSliceWithoutScanningTheGaps) {
  Sequencer s;
  const std::vector<Address> far = {Address(5), Address(uint64_t{1} << 40),
                                    Address(uint64_t{1} << 50)};
  ASSERT_TRUE(s.Bootstrap(Epoch(1), Address(0), {{kA, EncodeAddresses(far)}}).ok());
  EXPECT_EQ(Addrs(s, Epoch(1), kA, Address(6), kNoAddress), (std::vector<Address>{far[1], far[2]}));
  EXPECT_EQ(Addrs(s, Epoch(1), kA, Address(0), Address(uint64_t{1} << 45)),
            (std::vector<Address>{far[0], far[1]}));
  EXPECT_EQ(s.Next(Epoch(1), 1, {})->first, Address((uint64_t{1} << 50) + 1));
}

TEST(SequencerMaps, AddressSpaceExhaustion) {
  Sequencer s;
  ASSERT_TRUE(s.Bootstrap(Epoch(1), kMaxAddress, {}).ok());
  EXPECT_EQ(s.Next(Epoch(1), 2, {}).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(s.Next(Epoch(1), 1, {})->first, kMaxAddress);
  EXPECT_EQ(s.Next(Epoch(1), 1, {}).status().code(), Code::kFailedPrecondition);
}

TEST(AddressCodec, RoundTripsAndRefusesGarbage) {
  std::vector<Address> in = {Address(9), Address(0), Address(uint64_t{1} << 33), Address(9)};
  auto out = DecodeAddresses(EncodeAddresses(in));
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, (std::vector<Address>{Address(0), Address(9), Address(uint64_t{1} << 33)}));
  EXPECT_EQ(DecodeAddresses("nonsense").status().code(), Code::kMalformed);
  EXPECT_EQ(DecodeAddresses(EncodeAddresses(Range(0, 100)), 10).status().code(), Code::kTooLarge);
}

TEST(AddressCodec, CorruptedMapsAreRefusedNotCrashedOn) {
  // Array, bitmap and run containers across two chunks.
  std::vector<Address> in;
  for (uint64_t a = 0; a < 100; a += 3) in.emplace_back(a);
  for (uint64_t a = 70000; a < 80000; a += 2) in.emplace_back(a);
  for (uint64_t a = 200000; a < 300000; ++a) in.emplace_back(a);
  in.emplace_back(uint64_t{5} << 32);
  const std::string good = EncodeAddresses(in);
  ASSERT_EQ(DecodeAddresses(good)->size(), in.size());
  std::mt19937_64 rng(7);
  for (int i = 0; i < 3000; ++i) {
    std::string bad = good;
    if (i % 4 == 0) {
      bad.resize(rng() % bad.size());
    } else {
      for (int k = 0; k < 1 + i % 3; ++k) bad[rng() % bad.size()] ^= static_cast<char>(rng());
    }
    auto out = DecodeAddresses(bad, 1u << 20);
    if (!out.ok()) {
      EXPECT_TRUE(out.status().code() == Code::kMalformed || out.status().code() == Code::kTooLarge)
          << out.status().ToString();
    }
  }
}

}  // namespace
}  // namespace tally::sequencer
