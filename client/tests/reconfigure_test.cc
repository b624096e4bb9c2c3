// The pure layout edits of reconfiguration: LayoutWithout and LayoutWith.

#include "tally/client/reconfigure.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tally::client {
namespace {

std::vector<std::string> Chain(const proto::Layout& l, int segment, int stripe) {
  const auto& u = l.segments(segment).stripes(stripe).log_units();
  return {u.begin(), u.end()};
}

std::vector<std::string> Sequencers(const proto::Layout& l) {
  return {l.sequencers().begin(), l.sequencers().end()};
}

// Nodes a, b, c; two stripes of chains [a, b, c] and [b, c, a].
proto::Layout ThreeNodes() {
  proto::Layout l;
  l.set_epoch(4);
  for (const char* e : {"a", "b", "c"}) {
    l.add_sequencers(e);
    l.add_layout_servers(e);
  }
  auto* seg = l.add_segments();
  for (const auto& chain : {std::vector<std::string>{"a", "b", "c"}, {"b", "c", "a"}}) {
    auto* stripe = seg->add_stripes();
    for (const auto& u : chain) stripe->add_log_units(u);
  }
  uint64_t id = 1;
  for (const char* e : {"a", "b", "c"}) {
    auto* n = l.add_nodes();
    n->set_id(id++);
    n->set_endpoint(e);
  }
  return l;
}

TEST(LayoutWithTest, BringsARemovedNodeBackAtTheTailOfEveryChain) {
  auto without = LayoutWithout(ThreeNodes(), "a");
  ASSERT_TRUE(without.ok()) << without.status().ToString();
  auto with = LayoutWith(*without, "a");
  ASSERT_TRUE(with.ok()) << with.status().ToString();
  EXPECT_EQ(with->epoch(), 6u);
  EXPECT_EQ(Chain(*with, 0, 0), (std::vector<std::string>{"b", "c", "a"}));
  EXPECT_EQ(Chain(*with, 0, 1), (std::vector<std::string>{"b", "c", "a"}));
  // A standby sequencer again, behind the primary that took over.
  EXPECT_EQ(Sequencers(*with), (std::vector<std::string>{"b", "c", "a"}));
  EXPECT_EQ(with->nodes_size(), 3);
  EXPECT_EQ(with->layout_servers_size(), 3);

  // Once back, adding it again changes nothing.
  auto again = LayoutWith(*with, "a");
  EXPECT_EQ(again.status().code(), Code::kNotFound) << again.status().ToString();
  EXPECT_EQ(LayoutWith(ThreeNodes(), "c").status().code(), Code::kNotFound);
}

TEST(LayoutWithTest, FullChainsAreLeftAloneAndANewNodeIsListed) {
  // Chains of 3 are full: a fourth node only becomes a standby sequencer.
  auto with = LayoutWith(ThreeNodes(), "d");
  ASSERT_TRUE(with.ok()) << with.status().ToString();
  EXPECT_EQ(Chain(*with, 0, 0), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Sequencers(*with), (std::vector<std::string>{"a", "b", "c", "d"}));
  ASSERT_EQ(with->nodes_size(), 4);
  EXPECT_EQ(with->nodes(3).id(), 4u);
  EXPECT_EQ(with->nodes(3).endpoint(), "d");

  // A short chain (after a removal) takes the new node.
  auto without = LayoutWithout(ThreeNodes(), "b");
  ASSERT_TRUE(without.ok());
  auto d = LayoutWith(*without, "d");
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(Chain(*d, 0, 0), (std::vector<std::string>{"a", "c", "d"}));
  EXPECT_EQ(Chain(*d, 0, 1), (std::vector<std::string>{"c", "a", "d"}));
}

TEST(LayoutWithTest, ChainsGrowOnlyToTheNumberOfNodesAndOnlyInTheLastSegment) {
  proto::Layout l;
  l.set_epoch(0);
  l.add_sequencers("a");
  l.add_layout_servers("a");
  auto* old_seg = l.add_segments();
  old_seg->set_end(100);
  old_seg->add_stripes()->add_log_units("a");
  auto* seg = l.add_segments();
  seg->set_start(100);
  seg->add_stripes()->add_log_units("a");
  auto with = LayoutWith(l, "b");
  ASSERT_TRUE(with.ok()) << with.status().ToString();
  EXPECT_EQ(Chain(*with, 0, 0), (std::vector<std::string>{"a"}));
  EXPECT_EQ(Chain(*with, 1, 0), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Sequencers(*with), (std::vector<std::string>{"a", "b"}));

  EXPECT_EQ(LayoutWith(l, "").status().code(), Code::kInvalidArgument);
  proto::Layout empty;
  EXPECT_EQ(LayoutWith(empty, "b").status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace tally::client
