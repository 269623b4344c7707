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

/* Checksum of len bytes at data, continuing from `seed` (0 to start): feed
 * the result of one call as the seed of the next to checksum several pieces
 * as if they were one... except that piece boundaries are part of it. */
uint64_t eplb__checksum(const void *data, size_t len, uint64_t seed);

#endif /* EPLB_UTIL_CHECKSUM_H */
