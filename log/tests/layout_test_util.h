#pragma once

// Helpers shared by the layout server and proposer tests.

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "layout_rules.h"
#include "tally/proto/layout.pb.h"

namespace tally::log::testing {

// A minimal valid layout whose content is told apart by `tag`.
inline proto::Layout MakeLayout(uint64_t epoch, const std::string& tag) {
  proto::Layout l;
  l.set_epoch(epoch);
  l.set_cluster_id("test");
  l.add_sequencers("seq-" + tag);
  l.add_segments()->add_stripes()->add_log_units("unit-" + tag);
  return l;
}

inline proto::Rank R(uint64_t round, uint64_t node) { return MakeRank(round, node); }

// "layout-0" ... "layout-<n-1>".
inline std::vector<std::string> Endpoints(int n) {
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) out.push_back("layout-" + std::to_string(i));
  return out;
}

inline ::testing::AssertionResult SameAs(const proto::Layout& got, const proto::Layout& want) {
  if (SameLayout(got, want)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "got {" << got.ShortDebugString() << "} want {" << want.ShortDebugString() << "}";
}

}  // namespace tally::log::testing
