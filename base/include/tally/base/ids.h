#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <string_view>

namespace tally {

// A strongly typed 64-bit id: no implicit conversion to or from integers, so
// an Address cannot be passed where an Epoch is expected.
template <typename Tag>
class StrongId {
 public:
  constexpr StrongId() = default;
  constexpr explicit StrongId(uint64_t v) : v_(v) {}
  constexpr uint64_t value() const { return v_; }
  constexpr auto operator<=>(const StrongId&) const = default;
  constexpr StrongId next() const { return StrongId(v_ + 1); }

 private:
  uint64_t v_ = 0;
};

struct AddressTag {};
struct EpochTag {};
struct NodeIdTag {};

// A position in the global log. Addresses start at 0.
using Address = StrongId<AddressTag>;
// A layout generation. Starts at 0 and only grows.
using Epoch = StrongId<EpochTag>;
// A server node of the cluster.
using NodeId = StrongId<NodeIdTag>;

// Sentinels, defined once.
inline constexpr Address kNoAddress{std::numeric_limits<uint64_t>::max()};
inline constexpr Address kMaxAddress{std::numeric_limits<uint64_t>::max() - 1};

// A stream (a table, a named log) is identified by 128 bits. Streams named by
// users get the XXH3-128 hash of their name, so every client derives the same
// id without coordination.
struct StreamId {
  uint64_t hi = 0;
  uint64_t lo = 0;

  static StreamId FromName(std::string_view name);
  // 32 lowercase hex digits, hi then lo.
  std::string ToHex() const;
  // Parses 32 hex digits; returns false on anything else.
  static bool FromHex(std::string_view hex, StreamId* out);

  constexpr auto operator<=>(const StreamId&) const = default;
};

std::string ToString(Address a);
std::string ToString(Epoch e);
std::string ToString(NodeId n);

}  // namespace tally

template <typename Tag>
struct std::hash<tally::StrongId<Tag>> {
  size_t operator()(const tally::StrongId<Tag>& id) const noexcept {
    return std::hash<uint64_t>{}(id.value());
  }
};

template <>
struct std::hash<tally::StreamId> {
  size_t operator()(const tally::StreamId& id) const noexcept {
    return static_cast<size_t>(id.hi ^ (id.lo * 0x9E3779B97F4A7C15ULL));
  }
};
