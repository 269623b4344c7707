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
  int32_t num_scenarios; /* the scenario metrics it carries, 0: none */
} eplb__plan_buf_t;

/* Room for a plan of up to max_layers x num_slots.  0 or EPLB_ENOMEM. */
int eplb__plan_buf_alloc(eplb__plan_buf_t *b, int32_t max_layers,
                         int32_t num_slots, eplb_error_t *err);
/* The same with room for the metrics of num_scenarios scenarios: the
 * distribute stage then carries res->scenario_before and scenario_after
 * (allocated on every rank, num_scenarios each) from rank 0. */
int eplb__plan_buf_alloc_scenarios(eplb__plan_buf_t *b, int32_t max_layers,
                                   int32_t num_slots, int32_t num_scenarios,
                                   eplb_error_t *err);
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

/* ---- scenario runs (scenarios.c) ------------------------------------- */

/* One rank's scenarios: its K histograms (summed in place across ranks
 * by eplb__reduce_scenarios), their weights, and the buffer of the one
 * allreduce, all allocated before the ranks agree. */
typedef struct {
  int32_t num;
  eplb_stats_t *stats; /* [num] */
  double *weights;     /* [num] */
  double *pack;        /* [num x layers x experts] */
} eplb__scenarios_t;

/* Checks this rank's scenarios (each valid, each of local->stats[0]'s
 * shape: one that differs is named with both names, weights in range, at
 * most INT_MAX counts in all), copies them into *s and allocates the
 * per-scenario fields of res.  names[k] (NULL: "scenario k") name them in
 * messages, labels[k] (NULL: names) in res.  Local. */
int eplb__scenarios_prepare(eplb__scenarios_t *s, const eplb_scenarios_t *local,
                            const char *const *names, const char *const *labels,
                            eplb_sync_result_t *res, eplb_error_t *err);
void eplb__scenarios_free(eplb__scenarios_t *s);

/* A key of the scenario count and weights, for the options key. */
uint64_t eplb__scenarios_key(const eplb__scenarios_t *s, uint64_t seed);

/* Sums every scenario over `comm` in one MPI_Allreduce (shapes agreed),
 * checks every sum against EPLB_MAX_COUNT (the error names the scenario)
 * and, when `drop_dense`, drops the layers idle in every scenario (ids
 * into *dropped, malloc'd).  Identical on every rank. */
int eplb__reduce_scenarios(MPI_Comm comm, eplb__scenarios_t *s, int drop_dense,
                           int32_t **dropped, int32_t *num_dropped,
                           eplb_error_t *err);

/* Rank 0 plans the scenarios (eplb_plan_scenarios, or _from opts->current
 * or opts->current_map) and fills the metrics of res: before, after and
 * floor on the scenarios' weighted mean, each scenario's before and after.
 * Runs on rank 0 only. */
int eplb__sync_plan_root_scenarios(const eplb__scenarios_t *s,
                                   const eplb_sync_opts_t *opts,
                                   eplb_placement_t *plan,
                                   eplb_sync_result_t *res, eplb_error_t *err);

/* The weighted means of res's scenario metrics (every rank, after the
 * distribute stage). */
void eplb__scenarios_means(eplb_sync_result_t *res);

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

/* collect.c: reads this rank's files of each scenario into stats[k]
 * (patterns with %r, summed per scenario; `what` names the option in
 * messages, "--scenario"); names[k] gets scenario k's first expanded path.
 * On failure every stats[k] is empty.  Local. */
int eplb__sync_read_scenarios(const eplb_sync_scenario_t *sc, int32_t num,
                              int rank, eplb_stats_format_t format,
                              const char *output, const char *summary,
                              eplb_stats_t *stats, char (*names)[4096],
                              eplb_error_t *err);

/* collect.c: the counts this rank brings (`name` their source) are there
 * and valid.  Local. */
int eplb__sync_check_local(const eplb_stats_t *local, const char *name,
                           eplb_error_t *err);

/* write.c: rank 0's human summary of a run, on stdout. */
void eplb__sync_print_summary(const eplb_sync_opts_t *opts,
                              const eplb_sync_result_t *res);

#endif /* EPLB_SYNC_INTERNAL_H */
