#include "tally/net/frame.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace tally::net {
namespace {

proto::Frame Request(uint64_t id, std::string method, std::string payload) {
  proto::Frame f;
  f.set_kind(proto::Frame::REQUEST);
  f.set_request_id(id);
  f.set_method(std::move(method));
  f.set_payload(std::move(payload));
  f.set_timeout_ms(250);
  return f;
}

std::string LengthPrefix(uint32_t n) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return s;
}

TEST(FrameTest, RoundTripAndLittleEndianPrefix) {
  proto::Frame in = Request(7, "log.write_batch", std::string(300, 'x'));
  auto wire = EncodeFrame(in);
  ASSERT_TRUE(wire.ok()) << wire.status().ToString();
  const uint32_t body = static_cast<uint32_t>(in.ByteSizeLong());
  EXPECT_EQ(wire->size(), body + kFrameHeaderBytes);
  EXPECT_EQ(wire->substr(0, 4), LengthPrefix(body));

  FrameDecoder d;
  d.Feed(*wire);
  auto out = d.Next();
  ASSERT_TRUE(out.ok());
  ASSERT_TRUE(out->has_value());
  EXPECT_EQ((*out)->request_id(), 7u);
  EXPECT_EQ((*out)->method(), "log.write_batch");
  EXPECT_EQ((*out)->payload(), std::string(300, 'x'));
  EXPECT_EQ((*out)->timeout_ms(), 250u);
  auto none = d.Next();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_EQ(d.buffered_bytes(), 0u);
}

TEST(FrameTest, ByteByByteFeedingYieldsEveryFrameInOrder) {
  std::string wire;
  for (uint64_t i = 1; i <= 50; ++i) {
    ASSERT_TRUE(AppendFrame(Request(i, "m", std::string(i * 3, 'a')), &wire).ok());
  }
  FrameDecoder d;
  uint64_t expect = 1;
  for (char c : wire) {
    d.Feed(std::string_view(&c, 1));
    for (;;) {
      auto r = d.Next();
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      if (!r->has_value()) break;
      EXPECT_EQ((*r)->request_id(), expect);
      EXPECT_EQ((*r)->payload().size(), expect * 3);
      ++expect;
    }
  }
  EXPECT_EQ(expect, 51u);
}

TEST(FrameTest, TruncatedFrameWaitsForMoreBytes) {
  auto wire = EncodeFrame(Request(1, "m", "payload"));
  ASSERT_TRUE(wire.ok());
  for (size_t cut = 0; cut < wire->size(); ++cut) {
    FrameDecoder d;
    d.Feed(wire->substr(0, cut));
    auto r = d.Next();
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE(r->has_value()) << "cut at " << cut;
  }
}

TEST(FrameTest, OversizedLengthIsTooLargeAndSticky) {
  FrameDecoder d;
  d.Feed(LengthPrefix(70000000));
  auto r = d.Next();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kTooLarge);
  EXPECT_NE(r.status().message().find("70000000"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("67108864"), std::string::npos) << r.status().message();
  // A valid frame afterwards does not resynchronize the stream.
  auto wire = EncodeFrame(Request(1, "m", "p"));
  d.Feed(*wire);
  EXPECT_EQ(d.Next().status().code(), Code::kTooLarge);
}

TEST(FrameTest, ZeroLengthAndUnparsableBodiesAreMalformed) {
  {
    FrameDecoder d;
    d.Feed(LengthPrefix(0));
    EXPECT_EQ(d.Next().status().code(), Code::kMalformed);
  }
  {
    FrameDecoder d;
    d.Feed(LengthPrefix(8) + std::string(8, '\xff'));
    auto r = d.Next();
    EXPECT_EQ(r.status().code(), Code::kMalformed);
    EXPECT_NE(r.status().message().find("does not parse"), std::string::npos);
  }
  {
    // Parses as a protobuf but has no kind.
    proto::Frame f;
    f.set_request_id(3);
    std::string body = f.SerializeAsString();
    FrameDecoder d;
    d.Feed(LengthPrefix(static_cast<uint32_t>(body.size())) + body);
    EXPECT_EQ(d.Next().status().code(), Code::kMalformed);
  }
}

TEST(FrameTest, EncoderRefusesKindlessAndOversizedFrames) {
  proto::Frame f;
  std::string out = "keep";
  EXPECT_EQ(AppendFrame(f, &out).code(), Code::kInvalidArgument);
  proto::Frame big = Request(1, "m", std::string(2000, 'z'));
  EXPECT_EQ(AppendFrame(big, &out, /*max_frame_bytes=*/1000).code(), Code::kTooLarge);
  EXPECT_EQ(out, "keep");
}

TEST(FrameTest, RandomBytesNeverCrashAndAlwaysEndInErrorOrWait) {
  std::mt19937 rng(12345);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string junk(rng() % 200, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    // Keep the length prefix small half the time so bodies get parsed.
    if (junk.size() >= 4 && iter % 2 == 0) {
      junk.replace(0, 4, LengthPrefix(static_cast<uint32_t>(rng() % (junk.size() - 3))));
    }
    FrameDecoder d;
    d.Feed(junk);
    for (int i = 0; i < 100; ++i) {
      auto r = d.Next();
      if (!r.ok()) {
        EXPECT_TRUE(r.status().code() == Code::kMalformed || r.status().code() == Code::kTooLarge);
        break;
      }
      if (!r->has_value()) break;
    }
  }
}

TEST(FrameTest, StatusConvertsBothWaysKeepingCodeAndEpoch) {
  for (uint32_t c = 1; c <= static_cast<uint32_t>(Code::kFailedPrecondition); ++c) {
    Status s(static_cast<Code>(c), "message " + std::to_string(c));
    Status back = FromProto(ToProto(s));
    EXPECT_EQ(back.code(), s.code());
    EXPECT_EQ(back.message(), s.message());
  }
  Status fenced = WrongEpoch("epoch 3 < 5").WithCurrentEpoch(5);
  EXPECT_EQ(FromProto(ToProto(fenced)).current_epoch(), std::optional<uint64_t>(5));
  EXPECT_TRUE(FromProto(ToProto(Status::OK())).ok());
  proto::Error unknown;
  unknown.set_code(static_cast<proto::ErrorCode>(999));
  EXPECT_EQ(FromProto(unknown).code(), Code::kInternal);
}

}  // namespace
}  // namespace tally::net
