/* checksum.c - see checksum.h.  The hash is xxHash's XXH3 (64 bits), from
 * Debian's libxxhash: its build picks the SSE2 or the AVX2 kernel at run
 * time (about 28 GB/s on this machine's AVX2, twice what the same code
 * compiled here for baseline x86-64 reaches), which is why it is linked
 * rather than compiled inline.  Why a library: docs/shards.md,
 * "Checksums". */
#include "util/checksum.h"

#include <xxhash.h>

uint64_t eplb__checksum(const void *data, size_t len, uint64_t seed) {
  return (uint64_t)XXH3_64bits_withSeed(data, len, (XXH64_hash_t)seed);
}

eplb__hasher_t *eplb__hasher_new(void) {
  XXH3_state_t *s = XXH3_createState();
  if (s)
    XXH3_64bits_reset(s);
  return (eplb__hasher_t *)s;
}

void eplb__hasher_reset(eplb__hasher_t *h) {
  XXH3_64bits_reset((XXH3_state_t *)h);
}

void eplb__hasher_update(eplb__hasher_t *h, const void *data, size_t len) {
  XXH3_64bits_update((XXH3_state_t *)h, data, len);
}

uint64_t eplb__hasher_digest(const eplb__hasher_t *h) {
  return (uint64_t)XXH3_64bits_digest((const XXH3_state_t *)h);
}

void eplb__hasher_free(eplb__hasher_t *h) { XXH3_freeState((XXH3_state_t *)h); }

uint64_t eplb__mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
