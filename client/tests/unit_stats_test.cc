#include "tally/client/unit_stats.h"

#include <gtest/gtest.h>

namespace tally::client {
namespace {

proto::StatsResponse Answer(std::vector<uint64_t> le, std::vector<uint64_t> counts,
                            uint64_t sum_us = 0) {
  proto::StatsResponse r;
  uint64_t total = 0;
  for (uint64_t b : le) r.add_commit_bucket_le_us(b);
  for (uint64_t c : counts) {
    r.add_commit_bucket_counts(c);
    total += c;
  }
  r.set_commits(total);
  r.set_commit_records(total * 10);
  r.set_commit_bytes(total * 1000);
  r.set_commit_sum_us(sum_us);
  return r;
}

TEST(CommitHistogramTest, QuantilesAreBucketUpperBounds) {
  auto h = CommitHistogram::From(Answer({100, 200, 500, UINT64_MAX}, {50, 40, 9, 1}, 20'000));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->QuantileLeUs(0.5), 100u);
  EXPECT_EQ(h->QuantileLeUs(0.51), 200u);
  EXPECT_EQ(h->QuantileLeUs(0.9), 200u);
  EXPECT_EQ(h->QuantileLeUs(0.99), 500u);
  EXPECT_EQ(h->QuantileLeUs(1.0), UINT64_MAX);
  EXPECT_DOUBLE_EQ(h->MeanUs(), 200.0);

  auto empty = CommitHistogram::From(Answer({100, UINT64_MAX}, {0, 0}));
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->QuantileLeUs(0.99), 0u);
  EXPECT_DOUBLE_EQ(empty->MeanUs(), 0.0);
}

TEST(CommitHistogramTest, MalformedAnswersAreRefusedWithTheReason) {
  auto fewer = CommitHistogram::From(Answer({100, UINT64_MAX}, {1}));
  ASSERT_FALSE(fewer.ok());
  EXPECT_EQ(fewer.status().code(), Code::kInvalidArgument);
  EXPECT_NE(fewer.status().message().find("2 commit bucket bounds but 1 counts"), std::string::npos)
      << fewer.status().message();

  auto bounded = CommitHistogram::From(Answer({100, 200}, {1, 1}));
  ASSERT_FALSE(bounded.ok());
  EXPECT_NE(bounded.status().message().find("unbounded"), std::string::npos);
  auto only_unbounded = CommitHistogram::From(Answer({UINT64_MAX}, {3}));
  ASSERT_FALSE(only_unbounded.ok());
  EXPECT_NE(only_unbounded.status().message().find("bounded ones followed by one unbounded"),
            std::string::npos)
      << only_unbounded.status().message();

  auto unsorted = CommitHistogram::From(Answer({200, 100, UINT64_MAX}, {1, 1, 1}));
  ASSERT_FALSE(unsorted.ok());
  EXPECT_NE(unsorted.status().message().find("not ascending (100 after 200)"), std::string::npos)
      << unsorted.status().message();

  proto::StatsResponse miscounted = Answer({100, UINT64_MAX}, {3, 1});
  miscounted.set_commits(5);
  auto bad = CommitHistogram::From(miscounted);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("counts 4 commits in its buckets but reports 5"),
            std::string::npos)
      << bad.status().message();
}

TEST(CommitHistogramTest, SinceIsTheWindowBetweenTwoAnswers) {
  const std::vector<uint64_t> le = {100, 200, UINT64_MAX};
  auto before = CommitHistogram::From(Answer(le, {10, 2, 0}, 1'000));
  auto after = CommitHistogram::From(Answer(le, {15, 2, 3}, 9'000));
  ASSERT_TRUE(before.ok() && after.ok());
  auto d = after->Since(*before);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->counts, (std::vector<uint64_t>{5, 0, 3}));
  EXPECT_EQ(d->commits, 8u);
  EXPECT_EQ(d->records, 80u);
  EXPECT_EQ(d->bytes, 8'000u);
  EXPECT_EQ(d->sum_us, 8'000u);
  EXPECT_EQ(d->QuantileLeUs(0.5), 100u);
  EXPECT_EQ(d->QuantileLeUs(0.75), UINT64_MAX);

  // The other way round: the unit restarted and counts from zero again.
  auto back = before->Since(*after);
  ASSERT_FALSE(back.ok());
  EXPECT_NE(back.status().message().find("restarted"), std::string::npos);

  auto other = CommitHistogram::From(Answer({50, UINT64_MAX}, {1, 0}));
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(after->Since(*other).ok());
}

TEST(CommitHistogramTest, MergePoolsUnitsWithTheSameBuckets) {
  const std::vector<uint64_t> le = {100, 200, UINT64_MAX};
  CommitHistogram pooled;
  ASSERT_TRUE(pooled.Merge(*CommitHistogram::From(Answer(le, {1, 2, 3}, 600))).ok());
  ASSERT_TRUE(pooled.Merge(*CommitHistogram::From(Answer(le, {4, 0, 0}, 400))).ok());
  EXPECT_EQ(pooled.le_us, le);
  EXPECT_EQ(pooled.counts, (std::vector<uint64_t>{5, 2, 3}));
  EXPECT_EQ(pooled.commits, 10u);
  EXPECT_DOUBLE_EQ(pooled.MeanUs(), 100.0);
  EXPECT_EQ(pooled.QuantileLeUs(0.5), 100u);
  EXPECT_EQ(pooled.QuantileLeUs(0.7), 200u);

  Status st = pooled.Merge(*CommitHistogram::From(Answer({50, UINT64_MAX}, {1, 0})));
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(pooled.commits, 10u);
}

}  // namespace
}  // namespace tally::client
