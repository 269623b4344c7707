/* util/checksum.h - a fast 64-bit checksum for plans and expert weights:
 * xxHash's XXH3, 64 bits.
 *
 * Not cryptographic: it detects corruption and divergence (a flipped bit, a
 * torn message, a rank holding another plan, a row that rotted on disk),
 * not an attacker.  It runs at several times memory-copy speed on the
 * multi-MiB expert rows that migration moves, and its values are the same
 * on every machine (XXH3 is defined byte for byte), so a shard's at-rest
 * checksums can be checked anywhere ("xxh3-64", docs/shards.md). */
#ifndef EPLB_UTIL_CHECKSUM_H
#define EPLB_UTIL_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* XXH3-64 of len bytes at data with `seed` (0 for a fresh one; the
 * at-rest checksum of a row is its seed-0 value).  To checksum several
 * pieces, feed each result as the next call's seed; the result then
 * depends on where the pieces were cut, so cut them the same way on every
 * rank. */
uint64_t eplb__checksum(const void *data, size_t len, uint64_t seed);

/* The same hash over bytes that come in pieces: the digest is
 * eplb__checksum(all the bytes, len, 0), wherever they were cut. */
typedef struct eplb__hasher_s eplb__hasher_t;
eplb__hasher_t *eplb__hasher_new(void); /* NULL if out of memory */
void eplb__hasher_reset(eplb__hasher_t *h);
void eplb__hasher_update(eplb__hasher_t *h, const void *data, size_t len);
uint64_t eplb__hasher_digest(const eplb__hasher_t *h);
void eplb__hasher_free(eplb__hasher_t *h);

/* splitmix64's finalizer: a well-mixed 64-bit value from x, for
 * deterministic made-up content (test shards, synthetic statistics). */
uint64_t eplb__mix64(uint64_t x);

#endif /* EPLB_UTIL_CHECKSUM_H */
