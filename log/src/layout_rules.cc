#include "layout_rules.h"

#include <fmt/format.h>
#include <google/protobuf/util/message_differencer.h>

namespace tally::log {

int CompareRanks(const proto::Rank& a, const proto::Rank& b) {
  if (a.round() != b.round()) return a.round() < b.round() ? -1 : 1;
  if (a.node_id() != b.node_id()) return a.node_id() < b.node_id() ? -1 : 1;
  return 0;
}

std::string RankToString(const proto::Rank& rank) {
  return fmt::format("(round {}, node {})", rank.round(), rank.node_id());
}

proto::Rank MakeRank(uint64_t round, uint64_t node_id) {
  proto::Rank r;
  r.set_round(round);
  r.set_node_id(node_id);
  return r;
}

Status CheckRank(const proto::Rank& rank, bool present, const char* field) {
  if (!present || rank.round() == 0) {
    return InvalidArgument(
        fmt::format("{} is missing or has round 0; ranks start at round 1", field));
  }
  return Status::OK();
}

Status CheckLayout(const proto::Layout* layout, uint64_t epoch, const char* field) {
  if (layout == nullptr) return InvalidArgument(fmt::format("{} is missing", field));
  if (layout->epoch() != epoch) {
    return InvalidArgument(fmt::format("{}.epoch is {} but the request is for epoch {}", field,
                                       layout->epoch(), epoch));
  }
  if (layout->sequencers_size() == 0) {
    return InvalidArgument(fmt::format("{}.sequencers is empty (epoch {})", field, epoch));
  }
  if (layout->segments_size() == 0) {
    return InvalidArgument(fmt::format("{}.segments is empty (epoch {})", field, epoch));
  }
  return Status::OK();
}

bool SameLayout(const proto::Layout& a, const proto::Layout& b) {
  return google::protobuf::util::MessageDifferencer::Equals(a, b);
}

}  // namespace tally::log
