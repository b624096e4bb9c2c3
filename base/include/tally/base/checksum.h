#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tally {

// XXH3-64 of the bytes: the checksum of every stored record and frame.
uint64_t Checksum(std::span<const char> bytes);

// Incremental XXH3-64 over several pieces; equals Checksum of their concatenation.
class Checksummer {
 public:
  Checksummer();
  ~Checksummer();
  Checksummer(const Checksummer&) = delete;
  Checksummer& operator=(const Checksummer&) = delete;
  void Update(std::span<const char> bytes);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t*, kept opaque so xxhash.h stays private
};

}  // namespace tally
