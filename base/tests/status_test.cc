#include "tally/base/status.h"

#include <gtest/gtest.h>

#include "tally/base/result.h"

namespace tally {
namespace {

TEST(StatusTest, OkHasNoMessage) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.ToString(), "OK");
}

TEST(StatusTest, ToStringNamesCodeAndMessage) {
  Status s = AlreadyWritten("address 4812 already written (epoch 3); retry with a new token");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.ToString(),
            "ALREADY_WRITTEN: address 4812 already written (epoch 3); retry with a new token");
  EXPECT_FALSE(s.retryable());
}

TEST(StatusTest, RetryableCodes) {
  EXPECT_TRUE(IsRetryable(Code::kWrongEpoch));
  EXPECT_TRUE(IsRetryable(Code::kTimeout));
  EXPECT_TRUE(IsRetryable(Code::kUnavailable));
  EXPECT_FALSE(IsRetryable(Code::kCorruption));
  EXPECT_FALSE(IsRetryable(Code::kInvalidArgument));
}

TEST(StatusTest, EveryCodeHasAName) {
  for (uint32_t c = 0; c <= static_cast<uint32_t>(Code::kFailedPrecondition); ++c) {
    EXPECT_NE(CodeName(static_cast<Code>(c)), "UNKNOWN_CODE") << c;
  }
}

TEST(StatusTest, WithContextPrefixes) {
  Status s = IoError("disk full").WithContext("segment 7");
  EXPECT_EQ(s.message(), "segment 7: disk full");
  EXPECT_EQ(s.code(), Code::kIoError);
}

Result<int> Half(int x) {
  if (x % 2) return InvalidArgument("odd");
  return x / 2;
}

Result<int> Quarter(int x) {
  TALLY_ASSIGN_OR_RETURN(int h, Half(x));
  return Half(h);
}

TEST(ResultTest, PropagatesErrors) {
  EXPECT_EQ(*Quarter(8), 2);
  EXPECT_EQ(Quarter(6).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace tally
