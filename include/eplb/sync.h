/* eplb/sync.h - the multi-rank engine: reduce, plan, agree (and, with
 * shards, move and commit), over an MPI communicator.
 *
 * This is `eplb-sync` as a library call, for a training worker (say one
 * actor group of a GRPO pipeline) that owns its communicator and holds its
 * token counts in memory.  Every rank of `comm` calls it with its local
 * histogram; every rank returns the same result or the same error:
 *
 *   1. the ranks agree that every rank read its counts and that all shapes
 *      (layers, experts, layer ids) are the same; a rank that differs is
 *      named;
 *   2. MPI_Allreduce sums the counts (exact: integers up to 2^53);
 *   3. rank 0 plans (the planner of eplb/plan.h);
 *   4. MPI_Bcast of the plan with its generation and checksum; every rank
 *      checksums its copy and the ranks exchange the checksums, so a
 *      divergent copy fails every rank with the divergent ranks named;
 *   5. rank 0 writes the map and a JSON summary, atomically.
 *
 * With scenarios (eplb_sync_run_scenarios, eplb-sync --scenario), every
 * rank brings its counts of each of K workloads; the K histograms are
 * summed in the same one MPI_Allreduce, and rank 0 balances every
 * scenario at once (eplb_plan_scenarios, docs/planner.md "Scenarios").
 *
 * Before every collective phase the ranks agree on success (see
 * docs/sync.md): a rank that failed still takes part, so no rank ever waits
 * in a collective that another rank will not reach.
 *
 * This header includes mpi.h and so is not part of eplb/eplb.h. */
#ifndef EPLB_SYNC_H
#define EPLB_SYNC_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "eplb/error.h"
#include "eplb/formats.h"
#include "eplb/migrate.h"
#include "eplb/placement.h"
#include "eplb/plan.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The timed phases, in the order they run; eplb_sync_phase_name names
 * them for tables and summaries. */
typedef enum {
  EPLB_PHASE_READ = 0,   /* read the local statistics (file wrapper only) */
  EPLB_PHASE_SHAPE,      /* every rank's status and shape agreed */
  EPLB_PHASE_REDUCE,     /* MPI_Allreduce of the counts */
  EPLB_PHASE_PLAN,       /* rank 0 plans */
  EPLB_PHASE_DISTRIBUTE, /* MPI_Bcast of the plan */
  EPLB_PHASE_VERIFY,     /* checksums exchanged and compared */
  EPLB_PHASE_TRANSFER,   /* expert weights moved (--shards) */
  EPLB_PHASE_COMMIT,     /* new shards committed (--shards) */
  EPLB_PHASE_WRITE,      /* map and summary written by rank 0 */
  EPLB_PHASE_TOTAL,
  EPLB_NUM_PHASES
} eplb_sync_phase_t;

const char *eplb_sync_phase_name(eplb_sync_phase_t phase);

/* Largest generation number: generations are stored as uint64 in shards
 * but kept below 2^53 so that JSON readers (double) keep them exact. */
#define EPLB_MAX_GENERATION 9007199254740991ULL

typedef struct eplb_sync_opts_s {
  eplb_plan_opts_t plan;           /* planner options (eplb/plan.h) */
  const char *output;              /* map written by rank 0, or NULL */
  eplb_map_format_t output_format; /* AUTO: from output's extension */
  const char *summary;             /* JSON summary written by rank 0, or NULL */
  uint64_t generation;             /* generation of the current placement
                                      (0..EPLB_MAX_GENERATION-1); the new
                                      plan is generation + 1 */
  const eplb_placement_t *current; /* the placement the experts are in now,
                                      or NULL (plan from scratch); read on
                                      rank 0 only; same layers as the
                                      reduced statistics */
  const char *current_map;         /* or: a map file (expert map JSON or
                                      TensorRT-LLM YAML) that rank 0 reads
                                      as the current placement; ignored when
                                      `current` is set */
  const char *stats_name;          /* what to call the local counts in
                                      messages (default "counts in memory") */
  int quiet;                       /* 1: rank 0 prints nothing */
  /* Migration (docs/shards.md): move the expert weights of the per-rank
   * HDF5 shards in this directory to the plan.  The shards' map is then
   * the current placement and their generation the current generation;
   * plan.num_slots / num_gpus 0 take the shards' (ranks x slots per rank
   * on `ranks` GPUs), else they must match. */
  const char *shards_dir; /* or NULL: plan and write the map only */
  int32_t max_buffer_mb;  /* 0 = default, else as eplb/migrate.h */
  int32_t timeout_s;      /* 0 = default, else as eplb/migrate.h */
  /* Maps every consumer loads (docs/eplb-plan.md): */
  int32_t mtp_layers;       /* 0..EPLB_MAX_MTP_LAYERS multi-token-prediction
                               layers appended after the statistics' last
                               layer (rank 0, before the distribute stage,
                               so res->placement and the shards carry them;
                               a current map or shards hold them too) */
  eplb_mtp_rule_t mtp_from; /* how they are placed (default
                               EPLB_MTP_LAST) */
  int allow_duplicates;     /* 1: write an expert-map JSON in which a GPU
                               holds an expert twice; default 0: such a plan
                               fails every rank before anything moves */
} eplb_sync_opts_t;

/* Defaults: eplb_plan_opts_default, no output, generation 0, not quiet. */
void eplb_sync_opts_default(eplb_sync_opts_t *opts);

typedef struct eplb_sync_result_s {
  eplb_placement_t placement; /* the agreed plan, identical on every rank */
  uint64_t generation;        /* its generation (opts.generation + 1) */
  uint64_t checksum;          /* its checksum (verified on every rank) */
  int32_t num_ranks;
  double imbalance_before;         /* current (or contiguous) placement */
  double imbalance_after;          /* the plan */
  double floor;                    /* what no placement can beat */
  int64_t moves;                   /* replicas arriving on a new GPU (from the
                                      current placement, else the contiguous) */
  int32_t num_dropped;             /* all-zero dense layers skipped */
  int32_t *dropped;                /* [num_dropped] their layer ids */
  double seconds[EPLB_NUM_PHASES]; /* wall time per phase, rank 0's view */
  int migrated;                    /* 1: shards moved to `generation` */
  eplb_migrate_result_t migrate;   /* what moved (when migrated) */
  /* Scenario runs (0 and NULL otherwise).  imbalance_before, _after and
   * floor above are then those of the scenarios' weighted mean, each
   * layer of each normalised to its own total (eplb_report_scenarios_mean),
   * and each scenario's follows: */
  int32_t num_scenarios;    /* K */
  char **scenario_names;    /* [K] as the caller named them */
  double *scenario_weights; /* [K] */
  double *scenario_before;  /* [K] mean over layers of max/mean - 1 */
  double *scenario_after;   /* [K] the same under the plan */
  double scenario_mean_before, scenario_mean_after; /* weighted means */
} eplb_sync_result_t;

/* Frees what a run put in *res; NULL-safe, idempotent. */
void eplb_sync_result_cleanup(eplb_sync_result_t *res);

/* Collective over `comm` (not freed; the engine works on a duplicate with
 * MPI_ERRORS_RETURN).  `local` holds this rank's counts (NULL is an error
 * on that rank, agreed like any other).  On success every rank returns 0
 * and the same *res (cleanup with eplb_sync_result_cleanup); on failure
 * every rank returns the same EPLB_E* code and err->msg names the failing
 * rank(s) ("rank 3: ..."); *res is then empty and nothing was written. */
int eplb_sync_run(MPI_Comm comm, const eplb_stats_t *local,
                  const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                  eplb_error_t *err);

/* Largest number of statistics patterns one rank reads and sums. */
#define EPLB_SYNC_MAX_STATS 256

/* The same, reading this rank's counts from files: each of the
 * `num_patterns` patterns (1..EPLB_SYNC_MAX_STATS) has every "%r" replaced
 * by the rank ("stats/rank_%r.json"); the files are read with `format`
 * (EPLB_STATS_AUTO detects it) and summed.  A read error on any rank is
 * agreed like every other failure.  res->seconds[EPLB_PHASE_READ] is set. */
int eplb_sync_run_files(MPI_Comm comm, const char *const *patterns,
                        int num_patterns, eplb_stats_format_t format,
                        const eplb_sync_opts_t *opts, eplb_sync_result_t *res,
                        eplb_error_t *err);

/* ---- scenarios ---------------------------------------------------------
 *
 * Several workloads balanced at once.  Every rank brings its counts of
 * each scenario; every scenario must have the same shape on every rank (a
 * rank whose scenario differs is named, with its source); the K
 * histograms are summed across ranks in one MPI_Allreduce of K x L x E
 * counts (at most 2^31 - 1 of them); the layers idle in every scenario are
 * dropped when a source pads dense layers; rank 0 plans with
 * eplb_plan_scenarios, or eplb_plan_scenarios_from from opts->current,
 * opts->current_map or the shards; then distribute, verify, move and write
 * as eplb_sync_run.  The weights (local->weights, or the files' weight)
 * must be the same on every rank.  The result has the per-scenario fields
 * set; the summary lists every scenario. */

/* local: this rank's K histograms (1..EPLB_MAX_SCENARIOS) and the
 * weights; names[K] (or NULL: "scenario 0", ...) name them in messages
 * and in the summary. */
int eplb_sync_run_scenarios(MPI_Comm comm, const eplb_scenarios_t *local,
                            const char *const *names,
                            const eplb_sync_opts_t *opts,
                            eplb_sync_result_t *res, eplb_error_t *err);

/* One scenario of eplb_sync_run_scenario_files. */
typedef struct eplb_sync_scenario_s {
  const char *const *patterns; /* this rank's files of it, summed; "%r" is
                                  the rank, as in eplb_sync_run_files */
  int num_patterns;            /* 1..EPLB_SYNC_MAX_STATS */
  double weight;               /* EPLB_MIN..MAX_SCENARIO_WEIGHT, or 0: 1 */
  const char *name;            /* in the summary, or NULL: patterns[0] */
} eplb_sync_scenario_t;

/* The same, each rank reading its files of each of the num_scenarios
 * scenarios (1..EPLB_MAX_SCENARIOS).  A file that cannot be read on any
 * rank fails every rank with that rank and file named.
 * res->seconds[EPLB_PHASE_READ] is set. */
int eplb_sync_run_scenario_files(MPI_Comm comm,
                                 const eplb_sync_scenario_t *scenarios,
                                 int32_t num_scenarios,
                                 eplb_stats_format_t format,
                                 const eplb_sync_opts_t *opts,
                                 eplb_sync_result_t *res, eplb_error_t *err);

/* Expands "%r" in `pattern` to `rank` into buf (size bytes).  Returns 0,
 * or EPLB_EARG if the result does not fit. */
int eplb_sync_expand(const char *pattern, int rank, char *buf, size_t size,
                     eplb_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_SYNC_H */
