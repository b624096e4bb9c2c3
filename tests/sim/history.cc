#include "history.h"

#include <algorithm>

namespace tally::sim {

namespace {

std::string A(uint64_t address) { return "address " + std::to_string(address); }

bool AllowedAppendError(Code c) {
  switch (c) {
    case Code::kTimeout:
    case Code::kUnavailable:
    case Code::kOverloaded:
    case Code::kAlreadyWritten:  // attempts exhausted against hole fillers
      return true;
    default:
      return false;
  }
}

bool AllowedReadError(Code c) {
  switch (c) {
    case Code::kTimeout:
    case Code::kUnavailable:
    case Code::kOverloaded:
    case Code::kUnwritten:  // at or above the tail the reader saw
      return true;
    default:
      return false;
  }
}

}  // namespace

Seen Seen::Of(const proto::LogEntry& e) {
  Seen s;
  s.hole = e.type() == proto::HOLE;
  s.payload = e.payload();
  for (const auto& id : e.streams()) s.streams.emplace_back(id.hi(), id.lo());
  return s;
}

std::string Seen::ToString() const {
  if (hole) return "a hole";
  return "'" + payload + "' (" + std::to_string(streams.size()) + " streams)";
}

void History::Acked(const std::string& payload, uint64_t address) {
  auto [it, fresh] = acked_.emplace(address, payload);
  if (!fresh) {
    early_violations_.push_back(A(address) + " acknowledged twice: to '" + it->second +
                                "' and to '" + payload + "'");
  }
}

void History::AppendFailed(const std::string& payload, const Status& st) {
  ++append_failures_;
  errors_["append " + std::string(CodeName(st.code()))]++;
  if (!AllowedAppendError(st.code()) && !(io_errors_allowed_ && st.code() == Code::kIoError)) {
    early_violations_.push_back("append of '" + payload +
                                "' failed with an error no injected "
                                "fault explains: " +
                                st.ToString());
  }
}

void History::Read(const std::string& who, uint64_t address, const proto::LogEntry& entry) {
  ++reads_;
  Seen seen = Seen::Of(entry);
  if (entry.address() != address) {
    early_violations_.push_back(who + " read " + A(address) + " but got an entry stamped " +
                                A(entry.address()));
  }
  auto [it, fresh] = first_seen_.emplace(address, seen);
  if (fresh) {
    first_who_[address] = who;
  } else if (!(it->second == seen)) {
    early_violations_.push_back(A(address) + ": " + first_who_[address] + " read " +
                                it->second.ToString() + " but " + who + " read " + seen.ToString());
  }
}

void History::ReadFailed(const std::string& who, uint64_t address, const Status& st) {
  errors_["read " + std::string(CodeName(st.code()))]++;
  if (!AllowedReadError(st.code()) && !(io_errors_allowed_ && st.code() == Code::kIoError)) {
    early_violations_.push_back(
        who + " read of " + A(address) +
        " failed with an error no injected fault explains: " + st.ToString());
  }
}

void History::Replica(const std::string& unit, uint64_t address, const proto::LogEntry& entry) {
  replicas_[unit][address] = Seen::Of(entry);
}

void History::ReplicaMissing(const std::string& unit, uint64_t address, const Status& st) {
  early_violations_.push_back(unit + " lacks " + A(address) + " after the final pass (" +
                              st.ToString() + "): a settled address must be on every replica");
}

void History::EpochObserved(const std::string& who, uint64_t epoch) {
  auto [it, fresh] = last_epoch_.emplace(who, epoch);
  if (fresh) {
    ++epoch_observations_;
    return;
  }
  if (epoch == it->second) return;
  ++epoch_observations_;
  if (epoch < it->second) {
    early_violations_.push_back(who + " went back from epoch " + std::to_string(it->second) +
                                " to epoch " + std::to_string(epoch) + ": epochs must only grow");
  }
  it->second = epoch;
}

void History::LayoutCommitted(const std::string& who, uint64_t epoch, const std::string& layout) {
  auto [it, fresh] = committed_.emplace(epoch, std::make_pair(layout, who));
  if (!fresh && it->second.first != layout) {
    early_violations_.push_back("epoch " + std::to_string(epoch) + " committed differently by " +
                                it->second.second + " and " + who + ": Paxos agreement broken");
  }
}

void History::LayoutAdopted(const std::string& who, uint64_t epoch, const std::string& layout) {
  auto& last = adopted_[who];
  if (last.first == epoch && last.second == layout) return;
  EpochObserved(who, epoch);
  if (last.first == epoch && !last.second.empty() && last.second != layout) {
    early_violations_.push_back(who + " ran two different layouts of epoch " +
                                std::to_string(epoch));
  }
  last = {epoch, layout};
  runs_.emplace(std::make_pair(epoch, layout), who);
}

void History::Sealed(const std::string& unit, uint64_t epoch) {
  EpochObserved(unit + " seal", epoch);
  uint64_t& s = sealed_[unit];
  s = std::max(s, epoch);
}

uint64_t History::newest_committed_epoch() const {
  return committed_.empty() ? 0 : committed_.rbegin()->first;
}

size_t History::holes() const {
  size_t n = 0;
  for (const auto& [a, s] : first_seen_) n += s.hole ? 1 : 0;
  return n;
}

std::vector<std::string> History::Check(uint64_t final_tail) const {
  std::vector<std::string> out = early_violations_;
  // No acknowledged append lost, and never read as something else.
  for (const auto& [address, payload] : acked_) {
    auto it = first_seen_.find(address);
    if (it == first_seen_.end()) {
      out.push_back("acknowledged " + A(address) + " ('" + payload + "') was never read back");
    } else if (it->second.hole || it->second.payload != payload) {
      out.push_back("acknowledged " + A(address) + " holds '" + payload + "' but was read as " +
                    it->second.ToString());
    }
  }
  // Every address below the final tail was read (the final pass), and each
  // payload sits at one address at most.
  std::map<std::string, uint64_t> where;
  for (uint64_t a = 0; a < final_tail; ++a) {
    auto it = first_seen_.find(a);
    if (it == first_seen_.end()) {
      out.push_back(A(a) + " is below the final tail " + std::to_string(final_tail) +
                    " but no read settled it");
      continue;
    }
    if (it->second.hole) continue;
    auto [w, fresh] = where.emplace(it->second.payload, a);
    if (!fresh) {
      out.push_back("payload '" + it->second.payload + "' is in the log twice: at " + A(w->second) +
                    " and " + A(a));
    }
  }
  // Every epoch a client ran was committed, as that very layout; a seal
  // prepares at most the epoch after the newest committed one.
  for (const auto& [run, who] : runs_) {
    const auto& [epoch, layout] = run;
    auto it = committed_.find(epoch);
    if (it == committed_.end()) {
      out.push_back(who + " ran epoch " + std::to_string(epoch) +
                    " but no layout server committed it");
    } else if (it->second.first != layout) {
      out.push_back(who + " ran a layout of epoch " + std::to_string(epoch) +
                    " that differs from the one committed (held by " + it->second.second + ")");
    }
  }
  if (!committed_.empty()) {
    const uint64_t newest = newest_committed_epoch();
    for (const auto& [unit, epoch] : sealed_) {
      if (epoch > newest + 1) {
        out.push_back(unit + " is sealed at epoch " + std::to_string(epoch) +
                      " but the newest committed epoch is " + std::to_string(newest) +
                      ": a seal ran ahead of agreement");
      }
    }
  }
  // Replicas agree with what readers saw.
  for (const auto& [unit, entries] : replicas_) {
    for (const auto& [address, seen] : entries) {
      auto it = first_seen_.find(address);
      if (it != first_seen_.end() && !(it->second == seen)) {
        out.push_back(unit + " holds " + seen.ToString() + " at " + A(address) +
                      " but readers saw " + it->second.ToString());
      }
    }
  }
  return out;
}

}  // namespace tally::sim
