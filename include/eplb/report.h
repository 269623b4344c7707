/* eplb/report.h - the numbers eplb-report prints: how evenly a placement
 * spreads the load of each MoE layer over the GPUs.
 *
 * A table is TensorRT-LLM's (examples/ep_load_balancer): per layer, the mean
 * and the sample standard deviation (n - 1) of the per-GPU load and the
 * imbalance ratio max/mean - 1; an average row over layers.  TensorRT-LLM
 * computes them per iteration and averages; the statistics here are already
 * summed over the window, so these are the metrics of the window's load.  A
 * GPU's load is the sum over its slots of (expert load / replicas of that
 * expert).  The balance metrics people who train MoE models watch come with it:
 * the coefficient of variation of the expert loads (std/mean over experts) and
 * the hottest expert's share of its layer's tokens.  Pure computations: no I/O
 * except the writers. */
#ifndef EPLB_REPORT_H
#define EPLB_REPORT_H

#include <stdint.h>

#include "eplb/error.h"
#include "eplb/formats.h"
#include "eplb/placement.h"
#include "eplb/plan.h"
#include "eplb/series.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-layer load of one placement over its GPUs. */
typedef struct eplb_report_table_s {
  int32_t num_layers, num_gpus;
  double *gpu_load; /* [L * G]: gpu_load[l * G + g] */
  double *mean;     /* [L] mean over GPUs */
  double *std;      /* [L] sample standard deviation over GPUs (n - 1) */
  double *ratio;    /* [L] max / mean - 1 (0 = perfect or idle layer) */
  double avg_mean, avg_std, avg_ratio; /* the "average" row: means over L */
  double max_ratio;                    /* worst layer's ratio */
  int32_t worst_layer;                 /* its index 0..L-1 */
} eplb_report_table_t;

typedef struct eplb_report_s {
  int32_t num_layers, num_experts;
  int32_t *layer_ids;         /* [L] as the statistics named them */
  eplb_report_table_t before; /* contiguous placement (or per expert) */
  eplb_report_table_t after;  /* the map; empty when has_after == 0 */
  int has_after;
  double *cv;          /* [L] sample std / mean of expert loads */
  double *hot_share;   /* [L] max expert load / layer total */
  int32_t *hot_expert; /* [L] that expert (lowest id on a tie) */
  double avg_cv, avg_hot_share;
  double max_hot_share;  /* over layers */
  int32_t max_hot_layer; /* its index 0..L-1 */
  int32_t num_steps;     /* iterations the table averages over
                            (1: computed on the summed load) */
  struct eplb_report_scenarios_s *scenarios; /* eplb_report_add_scenarios,
                                                or NULL */
} eplb_report_t;

/* Fills *t with the per-GPU loads of placement p over the statistics (same
 * L; p->num_experts <= s->num_experts).  *t must be zeroed or cleaned up;
 * on failure it stays empty.  EPLB_ESHAPE if the shapes differ, EPLB_EMAP
 * if a slot holds an expert outside the statistics. */
int eplb_report_table(eplb_report_table_t *t, const eplb_stats_t *s,
                      const eplb_placement_t *p, eplb_error_t *err);
/* NULL-safe, idempotent. */
void eplb_report_table_cleanup(eplb_report_table_t *t);

/* The whole report.  `before` is the placement the load is compared
 * against (callers pass the contiguous placement, or one slot per expert
 * and one GPU per slot for a per-expert table); `after` may be NULL.  The
 * report keeps no pointer to its arguments.  *r must be zeroed; on failure
 * it stays empty. */
int eplb_report_compute(eplb_report_t *r, const eplb_stats_t *s,
                        const eplb_placement_t *before,
                        const eplb_placement_t *after, eplb_error_t *err);
/* The same for a per-iteration series (a TensorRT-LLM dump read with
 * eplb_stats_read_trtllm_series), as TensorRT-LLM's report computes it: the
 * tables' mean, std and ratio are computed per step and averaged over the
 * steps; gpu_load and the expert metrics are those of the summed load. */
int eplb_report_compute_series(eplb_report_t *r, const eplb_series_t *s,
                               const eplb_placement_t *before,
                               const eplb_placement_t *after,
                               eplb_error_t *err);

/* NULL-safe, idempotent. */
void eplb_report_cleanup(eplb_report_t *r);

/* The report as JSON (see docs/eplb-report.md) to `path` atomically, or to
 * stdout when path is "-". */
int eplb_report_write_json(const eplb_report_t *r, const char *path,
                           eplb_error_t *err);

/* A self-contained SVG: a layer x GPU heat map of the load before (and
 * after, with the same colour scale), and bars of each GPU's load summed
 * over layers.  Every heat-map cell is one <rect class="cell">.  Written
 * atomically. */
int eplb_report_write_svg(const eplb_report_t *r, const char *path,
                          eplb_error_t *err);

/* ---- scenarios ---------------------------------------------------------
 *
 * With several workloads (eplb/plan.h, "scenarios"): each one's load under
 * the report's placements, and a forecast: for each scenario, the
 * imbalance on it of plans made from the others only (leave-one-out), the
 * imbalance to expect on traffic not seen yet (docs/eplb-report.md). */

/* The weighted mean of the scenarios, each layer of each normalised to its
 * own total (a scenario idle in a layer is left out of that layer's mean;
 * a layer idle in all is zero): the one histogram the metrics of a
 * scenario plan are reported on by eplb-plan and eplb-sync.  *out gets
 * stats[0]'s layer ids (cleanup with eplb_stats_cleanup). */
int eplb_report_scenarios_mean(const eplb_scenarios_t *sc, eplb_stats_t *out,
                               eplb_error_t *err);

#define EPLB_REPORT_NAME_MAX 256

typedef struct eplb_report_scenario_s {
  char name[EPLB_REPORT_NAME_MAX]; /* as the caller named it */
  double weight;
  eplb_report_table_t before; /* its load under the report's placements; */
  eplb_report_table_t after;  /* after is empty without one (has_after) */
} eplb_report_scenario_t;

/* Leave-one-out: plans made from every scenario but k, judged on k (mean
 * over layers of max/mean - 1 of the GPU loads). */
typedef struct eplb_report_cv_s {
  int32_t num_scenarios;
  int32_t num_slots, num_gpus; /* the plans' shape */
  double *robust;   /* [K] eplb_plan_scenarios of the others (balanced) */
  double *balanced; /* [K] the balanced plan of the others' weighted mean */
  double *deepseek; /* [K] DeepSeek's plan of the others' weighted mean */
  double mean_robust, mean_balanced, mean_deepseek; /* weighted by the
                                                       scenarios' weights */
} eplb_report_cv_t;

typedef struct eplb_report_scenarios_s {
  int32_t num_scenarios;
  eplb_report_scenario_t *scenario; /* [num_scenarios] */
  double mean_before, mean_after;   /* weighted means of each scenario's
                                       average imbalance ratio */
  int has_cv;
  eplb_report_cv_t cv; /* eplb_report_cross_validate's, when has_cv */
} eplb_report_scenarios_t;

/* Adds the scenarios to a computed report: each one's table under
 * `before` and `after` (NULL when the report has none), of the report's
 * layers (same shape as the report's statistics).  names[K] (or NULL:
 * "scenario 0", ...) are copied, truncated to fit.  On failure r is as it
 * was. */
int eplb_report_add_scenarios(eplb_report_t *r, const eplb_scenarios_t *sc,
                              const char *const *names,
                              const eplb_placement_t *before,
                              const eplb_placement_t *after, eplb_error_t *err);

/* Leave-one-out over two scenarios or more, with the plan options' shape
 * (opts->policy is not used: all three plans are made).  *out must be
 * zeroed; cleanup with eplb_report_cv_cleanup. */
int eplb_report_cross_validate(const eplb_scenarios_t *sc,
                               const eplb_plan_opts_t *opts,
                               eplb_report_cv_t *out, eplb_error_t *err);
void eplb_report_cv_cleanup(eplb_report_cv_t *cv); /* NULL-safe */

#ifdef __cplusplus
}
#endif
#endif /* EPLB_REPORT_H */
