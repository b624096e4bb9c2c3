#include "tally/base/address_map.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <exception>
#include <memory>
#include <vector>

namespace tally {
namespace {

constexpr uint64_t kChunk = uint64_t{1} << 32;

// Container cookies of the portable format (CRoaring roaring_array.h).
constexpr uint32_t kCookieNoRuns = 12346;
constexpr uint32_t kCookieRuns = 12347;
constexpr uint32_t kNoOffsetThreshold = 4;
constexpr uint32_t kMaxArrayCardinality = 4096;

// Ranges up to this long are added address by address (see AddAddressRange).
constexpr uint64_t kAddOneByOneMax = 32;

uint64_t ChunkStart(uint64_t x) { return x & ~(kChunk - 1); }

}  // namespace

void AddAddressRange(AddressMap& map, uint64_t begin, uint64_t end) {
  if (begin >= end) return;
  assert(map.isEmpty() || map.maximum() < begin);
  if (end - begin <= kAddOneByOneMax) {
    // A flip recounts a whole bitmap container (8 KiB); short ranges are
    // cheaper added one by one.
    for (uint64_t a = begin; a < end; ++a) map.add(a);
    return;
  }
  while (begin < end) {
    uint64_t chunk_end = ChunkStart(begin) + kChunk;  // 0 on overflow of the last chunk
    if (chunk_end != 0 && chunk_end <= end) {
      // Roaring64Map::flip cannot name the exclusive end of a chunk within
      // that chunk, so flip up to its last element and add that one.
      map.flip(begin, chunk_end - 1);
      map.add(chunk_end - 1);
      begin = chunk_end;
    } else {
      map.flip(begin, end);  // same chunk: flips [begin, end)
      begin = end;
    }
  }
}

AddressMap SliceAddressMap(const AddressMap& map, uint64_t from, uint64_t to) {
  AddressMap out;
  if (map.isEmpty() || from >= to) return out;
  uint64_t min = map.minimum();
  uint64_t max = map.maximum();
  if (from > max || to <= min) return out;
  if (from <= min && to > max) return map;
  // Intersect with a mask that covers [from, to) only on the chunks the map
  // populates, found by walking the map chunk by chunk.
  AddressMap mask;
  uint64_t hi = std::min(to, max + 1);  // max < UINT64_MAX here, as max < to
  uint64_t x = std::max(from, min);
  auto it = map.begin();
  while (x < hi && it.move(x)) {
    uint64_t v = *it;
    if (v >= hi) break;
    uint64_t chunk = ChunkStart(v);
    uint64_t chunk_end = chunk + kChunk;  // may wrap to 0 for the last chunk
    uint64_t end = (chunk_end == 0 || chunk_end > hi) ? hi : chunk_end;
    AddAddressRange(mask, std::max(from, chunk), end);
    if (chunk_end == 0) break;
    x = chunk_end;
  }
  out = map & mask;
  return out;
}

std::string SerializeAddressMap(AddressMap map) {
  map.runOptimize();
  map.shrinkToFit();
  std::string out(map.getSizeInBytes(/*portable=*/true), '\0');
  map.write(out.data(), /*portable=*/true);
  return out;
}

namespace {

// Bytes of `data` read with bounds checks; every read fails once short.
class Reader {
 public:
  Reader(const char* data, size_t size) : p_(data), left_(size) {}
  bool Skip(size_t n) {
    if (n > left_) return false;
    p_ += n;
    left_ -= n;
    return true;
  }
  template <typename T>
  bool Read(T* out) {
    if (sizeof(T) > left_) return false;
    std::memcpy(out, p_, sizeof(T));  // the format is little-endian, as is x86-64
    return Skip(sizeof(T));
  }
  const char* pos() const { return p_; }
  size_t left() const { return left_; }

 private:
  const char* p_;
  size_t left_;
};

// Checks one 32-bit Roaring bitmap in the portable format
// (RoaringFormatSpec), container by container. CRoaring's own safe reader
// checks lengths only: it trusts stored cardinalities, array order and run
// bounds, and a lie there overflows buffers in later operations.
Status CheckPortableBitmap(Reader& in) {
  uint32_t cookie;
  if (!in.Read(&cookie)) return Malformed("truncated cookie");
  uint32_t containers;
  bool has_runs = (cookie & 0xFFFF) == kCookieRuns;
  bool has_offsets = true;
  std::vector<uint8_t> run_flags;
  if (has_runs) {
    containers = (cookie >> 16) + 1;
    run_flags.resize((containers + 7) / 8);
    for (auto& f : run_flags) {
      if (!in.Read(&f)) return Malformed("truncated run flags");
    }
    has_offsets = containers >= kNoOffsetThreshold;
  } else if (cookie == kCookieNoRuns) {
    if (!in.Read(&containers)) return Malformed("truncated container count");
    if (containers > 65536) return Malformed("more than 65536 containers");
  } else {
    return Malformed("unknown cookie " + std::to_string(cookie));
  }
  std::vector<std::pair<uint16_t, uint32_t>> headers(containers);  // key, cardinality
  for (auto& [key, card] : headers) {
    uint16_t card_minus_one;
    if (!in.Read(&key) || !in.Read(&card_minus_one)) return Malformed("truncated headers");
    card = uint32_t{card_minus_one} + 1;
  }
  for (size_t i = 1; i < headers.size(); ++i) {
    if (headers[i].first <= headers[i - 1].first) return Malformed("container keys not ascending");
  }
  if (has_offsets && !in.Skip(size_t{4} * containers)) return Malformed("truncated offsets");
  for (uint32_t i = 0; i < containers; ++i) {
    const uint32_t card = headers[i].second;
    if (has_runs && (run_flags[i / 8] >> (i % 8)) & 1) {
      uint16_t runs;
      if (!in.Read(&runs) || runs == 0) return Malformed("empty or truncated run container");
      uint64_t total = 0;
      int64_t prev_end = -1;
      for (uint16_t r = 0; r < runs; ++r) {
        uint16_t start, length_minus_one;
        if (!in.Read(&start) || !in.Read(&length_minus_one)) return Malformed("truncated runs");
        if (start <= prev_end || uint32_t{start} + length_minus_one > 0xFFFF) {
          return Malformed("runs overlap or leave their container");
        }
        prev_end = int64_t{start} + length_minus_one;
        total += uint64_t{length_minus_one} + 1;
      }
      if (total != card) return Malformed("run container cardinality mismatch");
    } else if (card > kMaxArrayCardinality) {
      uint64_t words[1024];
      if (!in.Read(&words)) return Malformed("truncated bitmap container");
      uint64_t bits = 0;
      for (uint64_t w : words) bits += static_cast<uint64_t>(__builtin_popcountll(w));
      if (bits != card) return Malformed("bitmap container cardinality mismatch");
    } else {
      int32_t prev = -1;
      for (uint32_t k = 0; k < card; ++k) {
        uint16_t v;
        if (!in.Read(&v)) return Malformed("truncated array container");
        if (v <= prev) return Malformed("array container not ascending");
        prev = v;
      }
    }
  }
  return Status::OK();
}

}  // namespace

Result<AddressMap> ParseAddressMap(std::string_view bytes, std::string_view what) {
  auto malformed = [&](std::string_view why) {
    return Malformed(std::string(what) + " is not a portable Roaring64Map (" +
                     std::to_string(bytes.size()) + " bytes, " + std::string(why) +
                     "); send CRoaring's portable serialization");
  };
  // Check the whole format before CRoaring sees it (see CheckPortableBitmap);
  // this also keeps CRoaring from printing to stderr on a bad cookie.
  Reader in(bytes.data(), bytes.size());
  uint64_t chunks;
  if (!in.Read(&chunks)) return malformed("shorter than its 8-byte header");
  int64_t prev_key = -1;
  for (uint64_t i = 0; i < chunks; ++i) {
    uint32_t key;
    if (!in.Read(&key)) return malformed("truncated chunk key");
    if (key <= prev_key) return malformed("chunk keys not ascending");
    prev_key = key;
    Status st = CheckPortableBitmap(in);
    if (!st.ok()) return malformed("chunk " + std::to_string(i) + ": " + st.message());
  }
  if (in.left() != 0) return malformed("trailing bytes after the map");
  // CRoaring 0.2.66 loads the 8-byte chunk count with an aligned load: hand
  // it aligned memory.
  std::unique_ptr<uint64_t[]> aligned(new uint64_t[(bytes.size() + 7) / 8]);
  std::memcpy(aligned.get(), bytes.data(), bytes.size());
  AddressMap map;
  try {
    map = AddressMap::readSafe(reinterpret_cast<const char*>(aligned.get()), bytes.size());
  } catch (const std::exception& e) {
    return malformed(e.what());
  }
  map.shrinkToFit();  // drop empty chunks, which iteration does not tolerate
  return map;
}

std::string EncodeAddresses(std::span<const Address> addresses) {
  AddressMap map;
  for (Address a : addresses) map.add(a.value());
  return SerializeAddressMap(std::move(map));
}

Result<std::vector<Address>> DecodeAddresses(std::string_view roaring64, uint64_t max_addresses) {
  auto map = ParseAddressMap(roaring64, "address map");
  if (!map.ok()) return map.status();
  uint64_t n = map->cardinality();
  if (n > max_addresses) {
    return TooLarge("address map holds " + std::to_string(n) + " addresses, more than the " +
                    std::to_string(max_addresses) + " asked for; ask for a narrower range");
  }
  std::vector<uint64_t> raw(n);
  map->toUint64Array(raw.data());
  std::vector<Address> out;
  out.reserve(n);
  for (uint64_t v : raw) out.emplace_back(v);
  return out;
}

}  // namespace tally
