#pragma once

// Sets of log addresses as CRoaring 64-bit maps: the stream address maps of
// log units and the sequencer, and their portable wire format. Parse checks
// every byte before CRoaring reads it, because CRoaring 0.2.66's "safe"
// reader trusts stored cardinalities and orderings.

#include <cstdint>
#include <roaring/roaring64map.hh>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tally/base/ids.h"
#include "tally/base/result.h"

namespace tally {

// CRoaring 0.2.66 declares Roaring64Map in the global namespace (later
// releases move it into `roaring::`); name it once here.
using AddressMap = ::Roaring64Map;

// Adds [begin, end) to `map`, which must hold nothing at or above `begin`
// (the sequencer's case: a grant lies above every address already issued;
// callers know it from the stream's tail, as asking the map is slow:
// Roaring64Map::isEmpty and maximum cost microseconds in CRoaring 0.2.66).
// Bulk: one container operation per 2^32-address chunk, not one per
// address. CRoaring 0.2.66 has no Roaring64Map::addRange, so this flips the
// range, which equals adding it under that precondition (checked in debug
// builds). Replace with Roaring64Map::addRange when CRoaring is upgraded.
void AddAddressRange(AddressMap& map, uint64_t begin, uint64_t end);

// The elements of `map` in [from, to) (`to` exclusive; UINT64_MAX covers
// everything up to UINT64_MAX - 1). Costs time in the number of 2^32 chunks
// the map populates, never in the width of the range.
AddressMap SliceAddressMap(const AddressMap& map, uint64_t from, uint64_t to);

// Portable serialization, run-optimized (a contiguous range costs a few bytes).
std::string SerializeAddressMap(AddressMap map);

// Parses portable bytes without reading past them. Malformed (naming `what`)
// when they do not parse or carry trailing bytes. Never throws.
Result<AddressMap> ParseAddressMap(std::string_view bytes, std::string_view what);

// Serializes addresses (any order, duplicates ignored) as a portable map.
std::string EncodeAddresses(std::span<const Address> addresses);

// The addresses of a serialized portable map, ascending. Malformed when the
// bytes do not parse or have trailing garbage; TooLarge when the map holds
// more than `max_addresses`.
Result<std::vector<Address>> DecodeAddresses(std::string_view roaring64,
                                             uint64_t max_addresses = uint64_t{1} << 24);

}  // namespace tally
