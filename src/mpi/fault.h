/* fault.h - fault injection for tests, read from the environment.
 *
 * Tests must prove that eplb never hangs and never leaves a torn shard when
 * a rank misbehaves; the only way to prove it is to make a rank misbehave
 * on purpose, at a chosen point.  EPLB_FAULT holds one or more faults
 * separated by ';':
 *
 *   corrupt-plan:3,5          ranks 3 and 5 flip a slot of the plan they
 *                             received, before verifying it
 *   crash:<phase>:<rank>      that rank calls _exit(1) at <phase>
 *                             (read, shape, reduce, plan, distribute,
 *                             verify, transfer, commit, apply - halfway
 *                             through applying a redo journal in place -,
 *                             rename - after its own rename or apply)
 *   hang:<phase>:<rank>       that rank stops taking part without dying:
 *                             at <phase> it sleeps until killed, so the
 *                             peers' watchdog (timeout_s, --timeout) must
 *                             end the job; in the transfer, before posting
 *                             the first batch it sends in (from layer L/2
 *                             on)
 *   enospc:<rank>             the last write of that rank's new shard (the
 *                             first of the flush before its close) fails
 *                             with ENOSPC, once: a disk full for a moment
 *   lose-write:<rank>         the same write is silently lost (success
 *                             reported), as an unchecked close loses one:
 *                             the read-back before the commit must see it
 *   corrupt-row:<rank>        that rank flips a byte of the first row set
 *                             it receives in a migration, once its receive
 *                             completes: a row corrupted in transit, which
 *                             the proof from disk before the vote must see
 *
 * Compiled in always, inert unless EPLB_FAULT is set: a production run pays
 * one getenv per query.  A malformed EPLB_FAULT is an error, not ignored,
 * so that a test with a typo fails instead of passing without its fault. */
#ifndef EPLB_FAULT_H
#define EPLB_FAULT_H

#include "eplb/error.h"

/* Parses EPLB_FAULT (once; later calls return the cached result).
 * Returns 0 (unset or valid) or EPLB_EARG naming the bad part. */
int eplb__fault_load(eplb_error_t *err);

/* 1 when EPLB_FAULT says `rank` corrupts the plan it receives. */
int eplb__fault_corrupt_plan(int rank);

/* 1 when EPLB_FAULT says `crash:<phase>:<rank>`; the caller then calls
 * _exit(1) (eplb__fault_crash_point does both). */
int eplb__fault_crash_here(const char *phase, int rank);

/* Crashes this process with _exit(1), no cleanup, when EPLB_FAULT says so
 * for (phase, rank); prints one line to stderr first so the test log shows
 * the crash was injected. */
void eplb__fault_crash_point(const char *phase, int rank);

/* 1 when EPLB_FAULT says `hang:<phase>:<rank>`. */
int eplb__fault_hang_here(const char *phase, int rank);

/* When EPLB_FAULT says so for (phase, rank): prints one line to stderr
 * ("hanging at <phase> (<where>)") and sleeps until the process is killed;
 * never returns then.  Else returns at once. */
void eplb__fault_hang_point(const char *phase, int rank, const char *where);

/* 1 (enospc) or 2 (lose-write) when EPLB_FAULT says so for `rank`, else
 * 0; the values are h5/shard_writer.h's EPLB__WRITE_ENOSPC / _LOSE. */
int eplb__fault_write(int rank);

/* 1 when EPLB_FAULT says `corrupt-row:<rank>`. */
int eplb__fault_corrupt_row(int rank);

/* Both: crash, or hang, when EPLB_FAULT says so for (phase, rank). */
void eplb__fault_point(const char *phase, int rank, const char *where);

/* Forgets the parsed table so the next query reads EPLB_FAULT again (for
 * unit tests that change the environment). */
void eplb__fault_reset(void);

#endif /* EPLB_FAULT_H */
