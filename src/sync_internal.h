/* sync_internal.h - the phases of the multi-rank engine, for the modules
 * that run them in other orders (sync.c runs them once, the --watch loop
 * once per round).  Internal: not installed.
 *
 * Every function here is collective over `comm` (a communicator with
 * MPI_ERRORS_RETURN) and returns the same code on every rank: each one
 * agrees on success before it starts its collective, so a rank that failed
 * earlier - and passes its failure in `local_rc` - is named, not waited
 * for. */
#ifndef EPLB_SYNC_INTERNAL_H
#define EPLB_SYNC_INTERNAL_H

#include <mpi.h>
#include <stdint.h>

#include "eplb/sync.h"

/* Agrees on local_rc (eplb__agree), then on the shape of `local`: every
 * rank compares (layers, experts, layer ids) with rank 0's and a rank that
 * differs fails with both shapes and both sources named.  *any_dense is 1
 * on every rank when any rank's source pads dense layers. */
int eplb__reduce_agree_shape(MPI_Comm comm, int local_rc,
                             const eplb_stats_t *local, const char *name,
                             int *any_dense, eplb_error_t *err);

/* Sums `local` over `comm` into *sum (empty on entry; same shape and layer
 * ids as local), checks every sum against EPLB_MAX_COUNT and, when
 * `drop_dense`, drops the all-zero layers (ids into *dropped, malloc'd, n
 * in *num_dropped).  The shapes must have been agreed. */
int eplb__reduce_sum(MPI_Comm comm, const eplb_stats_t *local, int drop_dense,
                     eplb_stats_t *sum, int32_t **dropped,
                     int32_t *num_dropped, eplb_error_t *err);

/* Agrees on local_rc (0, or rank 0's planning failure), broadcasts rank 0's
 * `plan` (valid on rank 0 only; *plan is filled on the others) with its
 * generation, checksum and the metrics in res, and verifies every copy:
 * fills res->placement, generation, checksum, the metrics.  A divergent
 * copy fails every rank with EPLB_EDIVERGED naming the divergent ranks.
 * seconds of broadcast and verify go to res->seconds. */
int eplb__sync_distribute(MPI_Comm comm, int local_rc,
                          eplb_placement_t *plan, eplb_sync_result_t *res,
                          eplb_error_t *err);

/* Rank 0 plans `sum` with opts (from opts->current when given), and fills
 * the metrics of res (before, after, floor, moves).  Runs on rank 0 only. */
int eplb__sync_plan_root(const eplb_stats_t *sum, const eplb_sync_opts_t *opts,
                         eplb_placement_t *plan, eplb_sync_result_t *res,
                         eplb_error_t *err);

/* Rank 0 writes opts->output and opts->summary (with `extra`, a cJSON
 * object whose items are added to the summary, or NULL); then the ranks
 * agree.  */
int eplb__sync_write(MPI_Comm comm, const eplb_sync_opts_t *opts,
                     const eplb_sync_result_t *res, const void *extra,
                     eplb_error_t *err);

#endif /* EPLB_SYNC_INTERNAL_H */
