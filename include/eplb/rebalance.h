/* eplb/rebalance.h - online rebalancing inside a training or serving job.
 *
 * A worker that owns an MPI communicator (an expert-parallel group, a GRPO
 * rollout group) feeds the token counts of its steps, and at a step
 * boundary asks the ranks to decide, together, whether to rebalance:
 *
 *   eplb_rebalancer_create(comm, &opts, NULL, L, E, &r, &err);   // once
 *   for each step:
 *     eplb_rebalancer_observe(r, &my_step_counts, 0, &err);      // local
 *     every N steps:
 *       eplb_rebalancer_step(r, &round, &err);                   // collective
 *       if (round.rebalanced) use eplb_rebalancer_current(r);
 *
 * A step sums what every rank observed since the last step (one
 * allreduce), smooths it across rounds (EMA), and rank 0 decides with
 * eplb/online.h: rebalance only when the current placement's imbalance on
 * the smoothed loads exceeds `threshold` and a migration-aware re-plan
 * improves it by at least `min_gain`, moving at most `layers_per_round`
 * layers, the worst first.  The decision and the new placement reach every
 * rank in one verified broadcast (as in eplb/sync.h).  Around the change
 * the `pause` and `resume` hooks run on every rank, so the consumer of the
 * weights can stop at a step boundary while experts move; with `shards_dir`
 * the expert weights are migrated between the per-rank HDF5 shards in
 * between (see docs/online.md).
 *
 * Includes mpi.h; not part of eplb/eplb.h. */
#ifndef EPLB_REBALANCE_H
#define EPLB_REBALANCE_H

#include <mpi.h>
#include <signal.h>
#include <stdint.h>

#include "eplb/error.h"
#include "eplb/formats.h"
#include "eplb/online.h"
#include "eplb/placement.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Runs on every rank around a change of placement.  `next` is the
 * placement about to be applied (pause) or now applied (resume).  Return 0,
 * or an EPLB_E* code with err set: a failed pause cancels the change on
 * every rank (the old placement stays). */
typedef int (*eplb_rebalance_hook_t)(void *ctx, const eplb_placement_t *next,
                                     eplb_error_t *err);

typedef struct eplb_rebalancer_opts_s {
  eplb_online_opts_t online; /* plan options, ema_alpha, threshold,
                                min_gain, layers_per_round */
  uint64_t generation;       /* generation of the current placement */
  const char *output;        /* rank 0 writes the map here after each
                                rebalance (atomically), or NULL */
  eplb_map_format_t output_format;
  const char *shards_dir;   /* migrate expert weights between the shards
                               in this directory, or NULL */
  int32_t max_buffer_mb;    /* migration batch size, 1..65536 (0 =
                               default 256) */
  int32_t timeout_s;        /* migration batch timeout, 1..86400 s (0 =
                               default 600) */
  const int32_t *layer_ids; /* the ids the counts name their
                              num_layers layers by (read at create), or
                              NULL: current's, else the shards', else
                              0..L-1 */
  eplb_rebalance_hook_t pause, resume;
  void *hook_ctx;
  int quiet; /* 1: rank 0 logs nothing */
} eplb_rebalancer_opts_t;

void eplb_rebalancer_opts_default(eplb_rebalancer_opts_t *opts);

typedef struct eplb_rebalancer_s eplb_rebalancer_t;

/* What one step did (the same on every rank). */
typedef struct eplb_round_s {
  int64_t round;           /* 1, 2, ... */
  int had_traffic;         /* 0: no new counts since the last step */
  int rebalanced;          /* 1: the placement changed */
  uint64_t generation;     /* the placement's generation after the step */
  double imbalance_before; /* current placement on the smoothed loads */
  double imbalance_after;  /* the placement after the step (same loads) */
  int32_t layers_changed;
  int64_t moves;       /* replicas that arrived on a new GPU */
  int64_t bytes_moved; /* expert bytes received over MPI (shards) */
  double seconds;
} eplb_round_t;

/* Collective over comm (duplicated); every rank must pass the same
 * options (a rank that does not is named).  `current` is the placement the
 * experts are in now (NULL: the contiguous placement of num_layers x
 * num_experts with opts->online.plan's slots and GPUs); with shards_dir it
 * must be NULL: the shards' map is used, with num_experts experts and
 * num_layers layers (0: the shards').  *out is freed with
 * eplb_rebalancer_destroy (collective). */
int eplb_rebalancer_create(MPI_Comm comm, const eplb_rebalancer_opts_t *opts,
                           const eplb_placement_t *current, int32_t num_layers,
                           int32_t num_experts, eplb_rebalancer_t **out,
                           eplb_error_t *err);
void eplb_rebalancer_destroy(eplb_rebalancer_t *r);

/* Local, no communication: adds this rank's counts (same shape as the
 * placement).  cumulative = 1: `counts` are counters since the start (as
 * MindSpeed-RL and MindIE write them) and what is new since the previous
 * cumulative call is added; a counter that went down means the counters
 * restarted, and the new values are what is new. */
int eplb_rebalancer_observe(eplb_rebalancer_t *r, const eplb_stats_t *counts,
                            int cumulative, eplb_error_t *err);

/* Local, no communication: makes the next eplb_rebalancer_step fail on
 * every rank with failure->code and failure->msg, as a failed observe
 * does, for counts this rank rejected before it could hand them over (a
 * binding that checks types and shapes itself, such as the Python
 * package).  The first failure since the last step is kept.  Returns 0,
 * or EPLB_EARG when failure is NULL or its code is not an EPLB_E* code
 * (negative). */
int eplb_rebalancer_observe_failed(eplb_rebalancer_t *r,
                                   const eplb_error_t *failure);

/* Collective: sums what the ranks observed since the last step, decides,
 * and applies a rebalance (hooks, migration, map).  *round says what
 * happened.  On error every rank returns the same code and the placement
 * is unchanged. */
int eplb_rebalancer_step(eplb_rebalancer_t *r, eplb_round_t *round,
                         eplb_error_t *err);

/* The placement in force (borrowed; identical on every rank). */
const eplb_placement_t *eplb_rebalancer_current(const eplb_rebalancer_t *r);
uint64_t eplb_rebalancer_generation(const eplb_rebalancer_t *r);

/* ---- eplb-sync --watch: the loop over statistics files -------------- */

#define EPLB_WATCH_MAX_ROUNDS 1000000000LL

typedef struct eplb_watch_opts_s {
  eplb_rebalancer_opts_t rb;   /* what each round does */
  double interval_s;           /* a round every this many seconds,
                                  0.01..86400 (default 60) */
  const char *trigger;         /* or earlier, when this file appears
                                  (rank 0 removes it), or NULL */
  int64_t max_rounds;          /* 0 = until *stop, else
                                  1..EPLB_WATCH_MAX_ROUNDS */
  const char *current_map;     /* the placement to start from (every rank
                                  reads it), or NULL: contiguous */
  const char *summary;         /* JSON summary rewritten by rank 0 after
                                  every round (atomically), or NULL */
  volatile sig_atomic_t *stop; /* set (by a signal handler) to end after
                                  the current round, or NULL */
} eplb_watch_opts_t;

void eplb_watch_opts_default(eplb_watch_opts_t *opts);

/* Collective: rounds of (every rank re-reads its files - patterns as in
 * eplb_sync_run_files, cumulative counters - then eplb_rebalancer_step)
 * until max_rounds or *stop.  A round in which some rank's file cannot be
 * read or parsed (caught half-written) is skipped and retried next round;
 * other failures end the loop on every rank with the same error.  Returns
 * 0 after a clean stop. */
int eplb_watch_run(MPI_Comm comm, const char *const *patterns, int num_patterns,
                   eplb_stats_format_t format, const eplb_watch_opts_t *opts,
                   eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_REBALANCE_H */
