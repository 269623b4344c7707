/* eplb/online.h - deciding when to rebalance while training or serving runs.
 *
 * The pure half of online rebalancing (no MPI, no I/O): feed it the counts
 * of each step or round, ask whether to rebalance, apply what it proposes
 * (migration is the caller's: eplb-sync --watch or a training worker), and
 * tell it what was applied.  Loads are smoothed across rounds with an
 * exponential moving average; a rebalance happens only when the current
 * placement's imbalance on the smoothed loads exceeds a threshold and a
 * migration-aware re-plan improves it by at least a minimum gain; at most
 * `layers_per_round` layers move per round, the worst first.
 *
 * With `history` K > 1 the last K rounds with traffic are kept apart, as
 * scenarios (eplb/plan.h): the imbalance a decision weighs is, per layer,
 * the mean over those windows of each window's imbalance, and the
 * re-plan balances every window at once (eplb_plan_scenarios_from), so a
 * placement is chosen for traffic that keeps changing, not for one
 * average of it (docs/online.md).
 */
#ifndef EPLB_ONLINE_H
#define EPLB_ONLINE_H

#include <stdint.h>

#include "eplb/error.h"
#include "eplb/placement.h"
#include "eplb/plan.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct eplb_online_opts_s {
  eplb_plan_opts_t plan;    /* slots, GPUs, move cost ... (global plans) */
  double ema_alpha;         /* weight of the newest round, 0 < a <= 1
                               (1: no smoothing; default 0.5) */
  double threshold;         /* rebalance only above this imbalance of the
                               current placement, 0..100 (default 0.1) */
  double min_gain;          /* ... and only if a layer's imbalance drops by at
                               least this much, 0..100 (default 0.02) */
  int32_t layers_per_round; /* layers moved per round at most, 0 = all,
                               else 1..EPLB_MAX_LAYERS (default 0) */
  int32_t history;          /* rounds whose windows are the scenarios of
                               the decision, 1..EPLB_MAX_SCENARIOS (default
                               1: the smoothed load alone; 0 is read as
                               1); above 1, ema_alpha only smooths what
                               eplb_online_smoothed returns */
} eplb_online_opts_t;

/* Defaults as documented above; plan options from eplb_plan_opts_default
 * (slots and GPUs still to be set). */
void eplb_online_opts_default(eplb_online_opts_t *opts);

typedef struct eplb_online_s eplb_online_t;

/* Starts a balancer for the placement the experts are in now (copied).
 * *out is freed with eplb_online_destroy. */
int eplb_online_create(eplb_online_t **out, const eplb_online_opts_t *opts,
                       const eplb_placement_t *current, eplb_error_t *err);
void eplb_online_destroy(eplb_online_t *o); /* NULL-safe */

/* Feeds the counts of one round (tokens since the last round), same shape
 * as the placement.  An all-zero round is "no new traffic" and changes
 * nothing (*had_traffic = 0). */
int eplb_online_observe(eplb_online_t *o, const eplb_stats_t *round,
                        int *had_traffic, eplb_error_t *err);

/* Feeds cumulative counters (what MindSpeed-RL and MindIE write): the round
 * is the difference from the previous cumulative counters.  A counter that
 * went down means the trainer restarted its counters: the new values are
 * the round.  The first call only sets the baseline unless
 * first_is_round. */
int eplb_online_observe_cumulative(eplb_online_t *o,
                                   const eplb_stats_t *cumulative,
                                   int first_is_round, int *had_traffic,
                                   eplb_error_t *err);

typedef struct eplb_online_decision_s {
  int rebalance;             /* 1: apply `proposal` */
  int32_t layers_changed;    /* layers whose placement differs */
  int64_t moves;             /* replicas arriving on a new GPU */
  double imbalance_before;   /* mean over layers, smoothed loads (history
                                > 1: of the mean over the windows of each
                                window's imbalance) */
  double imbalance_after;    /* the same for the proposal */
  eplb_placement_t proposal; /* the placement to migrate to (a copy of the
                                current one when rebalance == 0); freed by
                                eplb_online_decision_cleanup */
} eplb_online_decision_t;

/* Decides on the smoothed loads.  Fills *dec (which the caller cleans up). */
int eplb_online_decide(eplb_online_t *o, eplb_online_decision_t *dec,
                       eplb_error_t *err);
void eplb_online_decision_cleanup(eplb_online_decision_t *dec);

/* Records that `applied` is now where the experts are (after a successful
 * migration); same shape as before. */
int eplb_online_applied(eplb_online_t *o, const eplb_placement_t *applied,
                        eplb_error_t *err);

/* The placement the balancer believes current, and the smoothed loads
 * (borrowed; valid until the next call on o).  rounds: rounds observed. */
const eplb_placement_t *eplb_online_current(const eplb_online_t *o);
const eplb_stats_t *eplb_online_smoothed(const eplb_online_t *o);
int64_t eplb_online_rounds(const eplb_online_t *o);

/* With history > 1: the windows a decision weighs now, oldest first
 * (min(rounds, history) of them), as a scenario set borrowed from o
 * (valid until the next call on o); num_scenarios 0 before any traffic
 * or with history 1. */
eplb_scenarios_t eplb_online_windows(const eplb_online_t *o);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_ONLINE_H */
