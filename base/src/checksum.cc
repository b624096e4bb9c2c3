#include "tally/base/checksum.h"

#include <xxhash.h>

namespace tally {

uint64_t Checksum(std::span<const char> bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

Checksummer::Checksummer() : state_(XXH3_createState()) {
  XXH3_64bits_reset(static_cast<XXH3_state_t*>(state_));
}
Checksummer::~Checksummer() { XXH3_freeState(static_cast<XXH3_state_t*>(state_)); }
void Checksummer::Update(std::span<const char> bytes) {
  XXH3_64bits_update(static_cast<XXH3_state_t*>(state_), bytes.data(), bytes.size());
}
uint64_t Checksummer::Digest() const {
  return XXH3_64bits_digest(static_cast<XXH3_state_t*>(state_));
}

}  // namespace tally
