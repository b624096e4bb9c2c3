#include "tally/base/ids.h"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <unordered_set>

namespace tally {
namespace {

TEST(StreamIdTest, HexRoundTrip) {
  StreamId id{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  std::string hex = id.ToHex();
  EXPECT_EQ(hex, "0123456789abcdeffedcba9876543210");
  StreamId back;
  ASSERT_TRUE(StreamId::FromHex(hex, &back));
  EXPECT_EQ(back, id);

  StreamId zero;
  EXPECT_EQ(zero.ToHex(), std::string(32, '0'));
  ASSERT_TRUE(StreamId::FromHex(std::string(32, '0'), &back));
  EXPECT_EQ(back, zero);
}

TEST(StreamIdTest, UppercaseHexIsAccepted) {
  StreamId id;
  ASSERT_TRUE(StreamId::FromHex("0123456789ABCDEFFEDCBA9876543210", &id));
  EXPECT_EQ(id.hi, 0x0123456789abcdefULL);
  EXPECT_EQ(id.lo, 0xfedcba9876543210ULL);
}

TEST(StreamIdTest, BadHexIsRejected) {
  StreamId id{7, 9};
  EXPECT_FALSE(StreamId::FromHex("", &id));
  EXPECT_FALSE(StreamId::FromHex(std::string(31, 'a'), &id));
  EXPECT_FALSE(StreamId::FromHex(std::string(33, 'a'), &id));
  EXPECT_FALSE(StreamId::FromHex("0123456789abcdefgedcba9876543210", &id));
  EXPECT_FALSE(StreamId::FromHex("0x23456789abcdeffedcba9876543210", &id));
  EXPECT_FALSE(StreamId::FromHex(" 123456789abcdeffedcba9876543210", &id));
  // A rejected parse leaves the output alone.
  EXPECT_EQ(id, (StreamId{7, 9}));
}

TEST(StreamIdTest, FromNameIsStableAndDistinct) {
  StreamId a1 = StreamId::FromName("orders");
  StreamId a2 = StreamId::FromName("orders");
  EXPECT_EQ(a1, a2);
  EXPECT_NE(a1, StreamId::FromName("orders2"));
  EXPECT_NE(a1, StreamId::FromName("Orders"));
  EXPECT_NE(a1, StreamId{});

  std::set<StreamId> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(StreamId::FromName("stream-" + std::to_string(i)));
  EXPECT_EQ(ids.size(), 1000u);

  StreamId back;
  ASSERT_TRUE(StreamId::FromHex(a1.ToHex(), &back));
  EXPECT_EQ(back, a1);
}

TEST(StreamIdTest, OrderingIsHiThenLo) {
  EXPECT_LT((StreamId{1, 9}), (StreamId{2, 0}));
  EXPECT_LT((StreamId{1, 1}), (StreamId{1, 2}));
  std::unordered_set<StreamId> set{StreamId{1, 2}, StreamId{1, 2}, StreamId{2, 1}};
  EXPECT_EQ(set.size(), 2u);
}

TEST(StrongIdTest, OrderingAndNext) {
  Address a(5);
  Address b(7);
  EXPECT_LT(a, b);
  EXPECT_GT(b, a);
  EXPECT_EQ(a.next().next(), b);
  EXPECT_EQ(Address().value(), 0u);
  EXPECT_LT(kMaxAddress, kNoAddress);
  EXPECT_LT(Epoch(3), Epoch(4));
  EXPECT_EQ(std::hash<Epoch>{}(Epoch(3)), std::hash<Epoch>{}(Epoch(3)));
  // Distinct tags are distinct types: no mixing Address with Epoch.
  static_assert(!std::is_convertible_v<Address, Epoch>);
  static_assert(!std::is_convertible_v<uint64_t, Address>);
}

TEST(StrongIdTest, ToString) {
  EXPECT_EQ(ToString(Address(4812)), "4812");
  EXPECT_EQ(ToString(kNoAddress), "none");
  EXPECT_EQ(ToString(Epoch(3)), "3");
  EXPECT_EQ(ToString(NodeId(2)), "2");
}

}  // namespace
}  // namespace tally
