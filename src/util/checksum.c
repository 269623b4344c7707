/* checksum.c - see checksum.h.  Lanes mix 8-byte words with a multiply by an
 * odd 64-bit constant and a rotate; the tail and the length are folded in at
 * the end, and a final avalanche spreads every input bit over the result. */
#include "util/checksum.h"

#include <string.h>

#define P1 0x9E3779B185EBCA87ULL
#define P2 0xC2B2AE3D27D4EB4FULL
#define P3 0x165667B19E3779F9ULL

static inline uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

static inline uint64_t read64(const unsigned char *p) {
  uint64_t v;
  memcpy(&v, p, sizeof(v));
  return v;
}

static inline uint64_t mix(uint64_t acc, uint64_t v) {
  acc += v * P2;
  acc = rotl(acc, 31);
  return acc * P1;
}

static uint64_t avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= P2;
  h ^= h >> 29;
  h *= P3;
  h ^= h >> 32;
  return h;
}

uint64_t eplb__checksum(const void *data, size_t len, uint64_t seed) {
  const unsigned char *p = data;
  uint64_t a = seed + P1 + P2, b = seed + P2, c = seed, d = seed - P1;
  size_t i = 0;
  for (; i + 32 <= len; i += 32) {
    a = mix(a, read64(p + i));
    b = mix(b, read64(p + i + 8));
    c = mix(c, read64(p + i + 16));
    d = mix(d, read64(p + i + 24));
  }
  uint64_t h = rotl(a, 1) + rotl(b, 7) + rotl(c, 12) + rotl(d, 18);
  h ^= (uint64_t)len * P3;
  for (; i + 8 <= len; i += 8)
    h = rotl(h ^ mix(0, read64(p + i)), 27) * P1 + P3;
  for (; i < len; i++)
    h = rotl(h ^ ((uint64_t)p[i] * P3), 11) * P1;
  return avalanche(h);
}

uint64_t eplb__mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}
