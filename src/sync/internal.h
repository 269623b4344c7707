/* sync/internal.h - the stages of the multi-rank engine, for the modules
 * that run them in other orders (sync.c runs them once, the loops of loop/
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
#include <stddef.h>
#include <stdint.h>

#include "eplb/sync.h"

/* Agrees on local_rc and on the shape of `local` in one allgather: every
 * rank compares (layers, experts, layer ids) and opts_key (a key of the
 * options that steer the collectives) with rank 0's and a rank that
 * differs fails with both shapes and both sources named (`name` is this
 * rank's), or with "its options differ from rank 0's".  *any_dense is 1 on
 * every rank when any rank's source pads dense layers. */
int eplb__reduce_agree_shape(MPI_Comm comm, int local_rc,
                             const eplb_stats_t *local, const char *name,
                             uint64_t opts_key, int *any_dense,
                             eplb_error_t *err);

/* A key of the planner options, for the options key the ranks compare in
 * eplb__reduce_agree_shape (seed: what else the caller folds in). */
uint64_t eplb__plan_opts_key(const eplb_plan_opts_t *o, uint64_t seed);

/* eplb__checksum of a NUL-terminated string (NULL and "" differ). */
uint64_t eplb__string_key(const char *s, uint64_t seed);

/* Sums *sum (this rank's counts on entry; shapes agreed) over `comm` in
 * place, checks every sum against EPLB_MAX_COUNT and, when `drop_dense`,
 * drops the all-zero layers (ids into *dropped, malloc'd, n in
 * *num_dropped).  Failures are identical on every rank. */
int eplb__reduce_sum(MPI_Comm comm, eplb_stats_t *sum, int drop_dense,
                     int32_t **dropped, int32_t *num_dropped,
                     eplb_error_t *err);

/* The receive buffer of a plan broadcast, allocated before the ranks agree
 * (so an allocation failure is agreed, not met inside MPI_Bcast). */
typedef struct {
  unsigned char *bytes;
  size_t size;
  int32_t max_layers, num_slots;
} eplb__plan_buf_t;

/* Room for a plan of up to max_layers x num_slots.  0 or EPLB_ENOMEM. */
int eplb__plan_buf_alloc(eplb__plan_buf_t *b, int32_t max_layers,
                         int32_t num_slots, eplb_error_t *err);
void eplb__plan_buf_free(eplb__plan_buf_t *b);

/* Broadcasts rank 0's `plan` (valid on rank 0 only; on the others it is
 * filled) with rank 0's status `root_rc` (0, or its planning failure, whose
 * message then fails every rank), its generation, checksum and the metrics
 * in res, through `buf` (same size on every rank), and verifies every copy:
 * fills res->placement, generation, checksum, the metrics.  A divergent
 * copy fails every rank with EPLB_EDIVERGED naming the divergent ranks.
 * The seconds of broadcast and verify are added to res->seconds.  `aux`
 * (or NULL) carries two words of the caller's from rank 0 to every rank,
 * checksummed with the plan.  Other ranks' failures must have been agreed
 * before. */
int eplb__sync_distribute(MPI_Comm comm, int root_rc, eplb__plan_buf_t *buf,
                          eplb_placement_t *plan, eplb_sync_result_t *res,
                          int64_t aux[2], eplb_error_t *err);

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

/* collect.c: reads and sums this rank's statistics files (patterns with
 * %r); the first expanded path goes to name.  `output` and `summary` (or
 * NULL) are the files rank 0 will write: a statistics file that is one of
 * them (by identity, on this rank's file system) is EPLB_EARG.  Local. */
int eplb__sync_read_local(const char *const *patterns, int n, int rank,
                          eplb_stats_format_t format, const char *output,
                          const char *summary, eplb_stats_t *st, char *name,
                          size_t name_size, eplb_error_t *err);

/* collect.c: the counts this rank brings (`name` their source) are there
 * and valid.  Local. */
int eplb__sync_check_local(const eplb_stats_t *local, const char *name,
                           eplb_error_t *err);

/* write.c: rank 0's human summary of a run, on stdout. */
void eplb__sync_print_summary(const eplb_sync_opts_t *opts,
                              const eplb_sync_result_t *res);

#endif /* EPLB_SYNC_INTERNAL_H */
