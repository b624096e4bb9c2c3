#include "tally/sequencer/sequencer.h"

#include <algorithm>
#include <unordered_map>
#include <utility>

#include "tally/base/address_map.h"

namespace tally::sequencer {

namespace {

// A stream's addresses are `addresses` plus the run [run_begin, run_end),
// which a grant contiguous with the previous one extends in O(1): a stream
// written alone takes no bitmap work at all until it is queried.
struct StreamState {
  Address tail = kNoAddress;  // last address issued to the stream
  uint64_t run_begin = 0;
  uint64_t run_end = 0;  // run_begin == run_end: no pending run
  AddressMap addresses;  // every address is below run_begin

  // Records [first, end), which lies above every address of the stream.
  void Add(uint64_t first, uint64_t end) {
    if (run_begin < run_end && run_end == first) {
      run_end = end;
      return;
    }
    Fold();
    run_begin = first;
    run_end = end;
  }
  // Moves the pending run into `addresses`.
  void Fold() {
    AddAddressRange(addresses, run_begin, run_end);
    run_begin = run_end = 0;
  }
};

// Validation that needs no state: run before taking the lock.
Status CheckStreamCount(std::span<const StreamId> streams) {
  if (streams.size() <= kMaxStreamsPerRequest) return Status::OK();
  return InvalidArgument("request names " + std::to_string(streams.size()) +
                         " streams, more than the limit of " +
                         std::to_string(kMaxStreamsPerRequest) + "; split the request");
}

// A grant's streams must be distinct: a duplicate would make the grant's
// `previous` entries ambiguous.
Status CheckStreams(std::span<const StreamId> streams) {
  TALLY_RETURN_IF_ERROR(CheckStreamCount(streams));
  if (streams.size() < 2) return Status::OK();
  std::vector<StreamId> sorted(streams.begin(), streams.end());
  std::sort(sorted.begin(), sorted.end());
  auto dup = std::adjacent_find(sorted.begin(), sorted.end());
  if (dup != sorted.end()) {
    return InvalidArgument("stream " + dup->ToHex() +
                           " is named twice in one request; name each stream once");
  }
  return Status::OK();
}

std::string DescribeRange(Address from, Address to) {
  // Appends rather than `"[" + ...`: GCC 12 warns falsely (-Wrestrict) on
  // operator+(const char*, std::string&&) at -O3.
  std::string out = "[";
  out += ToString(from);
  out += ", ";
  out += to == kNoAddress ? std::string("end") : ToString(to);
  out += ")";
  return out;
}

}  // namespace

struct Sequencer::State {
  bool bootstrapped = false;
  Epoch epoch;
  Address global_tail;  // the next address to issue
  uint64_t tokens_issued = 0;
  std::unordered_map<StreamId, StreamState> streams;

  StreamTail TailOf(StreamId id) const {
    auto it = streams.find(id);
    return StreamTail{id, it == streams.end() ? kNoAddress : it->second.tail};
  }
};

Sequencer::Sequencer() : state_(std::make_unique<State>()) {}
Sequencer::~Sequencer() = default;

Status Sequencer::CheckEpochLocked(Epoch epoch) const {
  if (!state_->bootstrapped) {
    // Unavailable (retryable): the sequencer is not serving yet; it will once
    // its bootstrap (start-up or failover) is done.
    return Unavailable(
        "sequencer not bootstrapped; run cluster bootstrap or wait for failover");
  }
  if (epoch == state_->epoch) return Status::OK();
  const std::string mine = ToString(state_->epoch);
  std::string message =
      epoch < state_->epoch
          ? "request epoch " + ToString(epoch) + " is older than the sequencer's epoch " + mine +
                "; refresh the layout and retry"
          : "request epoch " + ToString(epoch) + " is newer than the sequencer's epoch " + mine +
                "; the sequencer awaits its bootstrap in the new epoch, retry shortly";
  return WrongEpoch(std::move(message)).WithCurrentEpoch(state_->epoch.value());
}

Result<Address> Sequencer::Bootstrap(Epoch epoch, Address global_tail,
                                     std::vector<StreamSnapshot> streams) {
  // Parse and check everything before touching the state, so that a bad
  // request changes nothing.
  std::vector<StreamId> ids;
  ids.reserve(streams.size());
  for (const auto& s : streams) ids.push_back(s.stream);
  std::sort(ids.begin(), ids.end());
  auto dup = std::adjacent_find(ids.begin(), ids.end());
  if (dup != ids.end()) {
    return InvalidArgument("bootstrap lists stream " + dup->ToHex() +
                           " twice; merge its maps into one");
  }
  std::unordered_map<StreamId, StreamState> rebuilt;
  rebuilt.reserve(streams.size());
  uint64_t tail = global_tail.value();
  for (auto& s : streams) {
    auto map = ParseAddressMap(s.roaring64, "bootstrap map of stream " + s.stream.ToHex());
    if (!map.ok()) return map.status();
    s.roaring64.clear();
    s.roaring64.shrink_to_fit();
    if (map->isEmpty()) continue;  // a stream without addresses needs no state
    uint64_t max = map->maximum();
    if (max > kMaxAddress.value()) {
      return InvalidArgument("bootstrap map of stream " + s.stream.ToHex() + " holds address " +
                             std::to_string(max) + ", above the largest valid address " +
                             ToString(kMaxAddress) + "; drop it from the map");
    }
    // An address in a map was certainly issued: never issue it again, even
    // if the caller's global tail lags behind the stream index.
    tail = std::max(tail, max + 1);
    StreamState& state = rebuilt[s.stream];
    state.tail = Address(max);
    state.addresses = std::move(*map);
  }

  std::lock_guard lock(mu_);
  if (state_->bootstrapped && epoch <= state_->epoch) {
    return WrongEpoch("sequencer is already bootstrapped at epoch " + ToString(state_->epoch) +
                      "; a bootstrap needs a newer epoch than that, got " + ToString(epoch))
        .WithCurrentEpoch(state_->epoch.value());
  }
  // This process never hands out an address twice, even to a new epoch.
  if (state_->bootstrapped) tail = std::max(tail, state_->global_tail.value());
  state_->bootstrapped = true;
  state_->epoch = epoch;
  state_->global_tail = Address(tail);
  state_->tokens_issued = 0;
  state_->streams = std::move(rebuilt);
  return state_->global_tail;
}

Result<Grant> Sequencer::Next(Epoch epoch, uint32_t count, std::span<const StreamId> streams) {
  if (count == 0 || count > kMaxTokensPerGrant) {
    return InvalidArgument("token count " + std::to_string(count) + " is out of range [1, " +
                           std::to_string(kMaxTokensPerGrant) +
                           "]; ask for at least one token and split larger batches");
  }
  TALLY_RETURN_IF_ERROR(CheckStreams(streams));
  Grant grant;
  grant.count = count;
  grant.previous.reserve(streams.size());

  std::lock_guard lock(mu_);
  TALLY_RETURN_IF_ERROR(CheckEpochLocked(epoch));
  const uint64_t first = state_->global_tail.value();
  // Addresses up to kMaxAddress are valid; kNoAddress is the sentinel.
  if (first > kMaxAddress.value() || kMaxAddress.value() - first < count - 1) {
    return FailedPrecondition("address space exhausted at address " + std::to_string(first) +
                              "; the log cannot grow further, start a new log");
  }
  const uint64_t end = first + count;
  grant.first = Address(first);
  for (StreamId id : streams) {
    StreamState& s = state_->streams[id];
    grant.previous.push_back(StreamTail{id, s.tail});
    s.Add(first, end);
    s.tail = Address(end - 1);
  }
  state_->global_tail = Address(end);
  state_->tokens_issued += count;
  return grant;
}

Result<Tails> Sequencer::Tail(Epoch epoch, std::span<const StreamId> streams) const {
  TALLY_RETURN_IF_ERROR(CheckStreamCount(streams));  // duplicates are harmless here
  Tails tails;
  tails.streams.reserve(streams.size());
  std::lock_guard lock(mu_);
  TALLY_RETURN_IF_ERROR(CheckEpochLocked(epoch));
  tails.global_tail = state_->global_tail;
  for (StreamId id : streams) tails.streams.push_back(state_->TailOf(id));
  return tails;
}

Result<std::string> Sequencer::StreamAddresses(Epoch epoch, StreamId stream, Address from,
                                               Address to) const {
  if (from > to) {
    return InvalidArgument("stream address range " + DescribeRange(from, to) +
                           " is reversed; pass from <= to");
  }
  AddressMap slice;
  {
    std::lock_guard lock(mu_);
    TALLY_RETURN_IF_ERROR(CheckEpochLocked(epoch));
    auto it = state_->streams.find(stream);
    if (it != state_->streams.end()) {
      it->second.Fold();  // changes the representation, not the addresses
      slice = SliceAddressMap(it->second.addresses, from.value(), to.value());
    }
  }
  return SerializeAddressMap(std::move(slice));
}

SequencerStats Sequencer::Stats() const {
  std::lock_guard lock(mu_);
  SequencerStats st;
  st.bootstrapped = state_->bootstrapped;
  st.epoch = state_->epoch;
  st.global_tail = state_->global_tail;
  st.tokens_issued = state_->tokens_issued;
  for (auto& [id, s] : state_->streams) {
    s.Fold();
    if (s.addresses.isEmpty()) continue;
    ++st.streams;
    st.map_bytes += s.addresses.getSizeInBytes(/*portable=*/true);
  }
  return st;
}

}  // namespace tally::sequencer
