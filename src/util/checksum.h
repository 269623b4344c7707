/* util/checksum.h - a fast 64-bit checksum for plans and expert weights.
 *
 * Not cryptographic: it detects corruption and divergence (a flipped bit, a
 * torn message, a rank holding another plan), not an attacker.  Four
 * independent 64-bit lanes of multiply-rotate mixing, so it runs at memory
 * speed on the multi-MiB expert rows that migration moves.  Values are the
 * same on every little-endian machine (all ranks of a job share one
 * architecture). */
#ifndef EPLB_UTIL_CHECKSUM_H
#define EPLB_UTIL_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* Checksum of len bytes at data, starting from `seed` (0 for a fresh one).
 * To checksum several pieces, feed each result as the next call's seed; the
 * result then depends on where the pieces were cut, so cut them the same way
 * on every rank. */
uint64_t eplb__checksum(const void *data, size_t len, uint64_t seed);

/* splitmix64's finalizer: a well-mixed 64-bit value from x, for
 * deterministic made-up content (test shards, synthetic statistics). */
uint64_t eplb__mix64(uint64_t x);

#endif /* EPLB_UTIL_CHECKSUM_H */
