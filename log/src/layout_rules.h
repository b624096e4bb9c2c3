#pragma once

// Private: what the layout server (acceptor) and the layout proposer agree
// on: method names, rank order, and the checks every layout request passes.
// See docs/layout.md.

#include <cstdint>
#include <string>

#include "tally/base/status.h"
#include "tally/proto/layout.pb.h"

namespace tally::log {

inline constexpr char kLayoutPrepareMethod[] = "layout.prepare";
inline constexpr char kLayoutProposeMethod[] = "layout.propose";
inline constexpr char kLayoutCommitMethod[] = "layout.commit";
inline constexpr char kLayoutCommittedMethod[] = "layout.committed";

// Lexicographic (round, node_id): <0, 0 or >0.
int CompareRanks(const proto::Rank& a, const proto::Rank& b);
inline bool RankLess(const proto::Rank& a, const proto::Rank& b) { return CompareRanks(a, b) < 0; }

// "(round 3, node 2)".
std::string RankToString(const proto::Rank& rank);

proto::Rank MakeRank(uint64_t round, uint64_t node_id);

// INVALID_ARGUMENT naming `field` unless rank.round >= 1.
Status CheckRank(const proto::Rank& rank, bool present, const char* field);

// INVALID_ARGUMENT naming the field unless `layout` is present, its epoch
// is `epoch` and it names at least one sequencer and one segment. Deeper
// checks (chains, segment order) belong to whoever builds the layout.
Status CheckLayout(const proto::Layout* layout, uint64_t epoch, const char* field);

// Field-by-field equality (the idempotence test for commits and
// re-proposals of a committed epoch).
bool SameLayout(const proto::Layout& a, const proto::Layout& b);

}  // namespace tally::log
