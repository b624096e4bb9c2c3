#include "tally/client/layout.h"

#include <gtest/gtest.h>

#include <string>

namespace tally::client {
namespace {

constexpr char kTwoSegments[] = R"({
  "epoch": "3",
  "sequencers": ["seq:1"],
  "segments": [
    {"start": "0", "end": "100", "stripes": [{"logUnits": ["a", "b"]}]},
    {"start": "100", "stripes": [{"logUnits": ["c"]}, {"logUnits": ["d", "e"]}]}
  ]
})";

TEST(LayoutTest, ParsesJsonAndMapsAddressesToStripes) {
  auto layout = Layout::FromJson(kTwoSegments);
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ(layout->epoch(), Epoch(3));
  EXPECT_EQ(layout->primary_sequencer(), "seq:1");
  EXPECT_EQ(layout->ChainFor(Address(7)), (Chain{"a", "b"}));
  EXPECT_EQ(layout->ChainFor(Address(99)), (Chain{"a", "b"}));
  EXPECT_EQ(layout->ChainFor(Address(100)), (Chain{"c"}));
  EXPECT_EQ(layout->ChainFor(Address(101)), (Chain{"d", "e"}));
  EXPECT_EQ(layout->ChainFor(Address(1'000'001)), (Chain{"d", "e"}));
  EXPECT_EQ(layout->Endpoints(), (std::vector<std::string>{"seq:1", "a", "b", "c", "d", "e"}));
}

Result<Layout> Parse(const std::string& json) { return Layout::FromJson(json); }

void ExpectInvalid(const std::string& json, const std::string& needle) {
  auto r = Parse(json);
  ASSERT_FALSE(r.ok()) << json;
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().ToString();
}

TEST(LayoutTest, RefusesBadLayoutsWithClearErrors) {
  ExpectInvalid(R"({"segments": [{"stripes": [{"logUnits": ["a"]}]}]})", "no sequencer");
  ExpectInvalid(R"({"sequencers": ["s"]})", "no segment");
  ExpectInvalid(R"({"sequencers": ["s"], "segments": [{"stripes": [{"logUnits": []}]}]})",
                "empty chain");
  ExpectInvalid(R"({"sequencers": ["s"], "segments": [{}]})", "no stripe");
  ExpectInvalid(R"({"sequencers": ["s"], "segments": [{"stripes": [{"logUnits": ["a", "a"]}]}]})",
                "twice");
  ExpectInvalid(R"({"sequencers": ["s"], "segments": [
      {"start": "0", "end": "100", "stripes": [{"logUnits": ["a"]}]},
      {"start": "50", "stripes": [{"logUnits": ["a"]}]}]})",
                "overlap");
  ExpectInvalid(R"({"sequencers": ["s"], "segments": [
      {"start": "0", "end": "100", "stripes": [{"logUnits": ["a"]}]},
      {"start": "150", "stripes": [{"logUnits": ["a"]}]}]})",
                "gap");
  ExpectInvalid(R"({"sequencers": ["s"], "segments": [
      {"start": "0", "stripes": [{"logUnits": ["a"]}]},
      {"start": "150", "stripes": [{"logUnits": ["a"]}]}]})",
                "not the last");
}

TEST(LayoutTest, RefusesJsonThatDoesNotParse) {
  auto r = Layout::FromJson("{not json");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kMalformed);
}

}  // namespace
}  // namespace tally::client
