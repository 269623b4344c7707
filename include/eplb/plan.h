/* eplb/plan.h - the planner: loads in, placement out.
 *
 * Pure: arrays in, arrays out; no MPI, no I/O, no global state.  Results are
 * deterministic on every machine (ties break towards the lower index), which
 * is what lets every rank of eplb-sync check it holds the same plan.
 *
 * Policies:
 *  - EPLB_POLICY_DEEPSEEK: DeepSeek's published EPLB algorithm.  Replicate
 *    the expert with the highest load per replica until every slot is used,
 *    then pack heaviest-first into the lightest GPU with room.  Hierarchical
 *    (groups packed to nodes first) when num_groups % num_nodes == 0 and
 *    num_nodes > 1; global otherwise.
 *  - EPLB_POLICY_BALANCED (default): never worse than DEEPSEEK on the
 *    planned loads, never two copies of one expert on a GPU, and a local
 *    search (slot swaps between the most loaded GPU and the others) that
 *    removes what greedy packing leaves.
 */
#ifndef EPLB_PLAN_H
#define EPLB_PLAN_H

#include <stdint.h>

#include "eplb/error.h"
#include "eplb/placement.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Documented ranges of the planner's integer options (slots and GPUs:
 * eplb/placement.h). */
#define EPLB_MIN_NODES 1        /* at most num_gpus */
#define EPLB_MIN_GROUPS 1       /* at most num_experts */
#define EPLB_MIN_PLAN_THREADS 0 /* 0: one per CPU the caller may use */
#define EPLB_MAX_PLAN_THREADS 64

typedef enum {
  EPLB_POLICY_BALANCED = 0,
  EPLB_POLICY_DEEPSEEK = 1
} eplb_policy_t;

typedef struct eplb_plan_opts_s {
  int32_t num_slots;  /* S: physical slots per layer, S >= E, S % G == 0 */
  int32_t num_gpus;   /* G: 1..EPLB_MAX_GPUS */
  int32_t num_nodes;  /* N: 1..G, G % N == 0 (default 1) */
  int32_t num_groups; /* K: expert groups, 1..E; E % K == 0 when the plan is
                         hierarchical (default 1) */
  eplb_policy_t policy;
  /* Re-planning from a current placement (eplb_plan_from); ignored by
   * eplb_plan.  See docs/planner.md. */
  int32_t max_moves;     /* replicas that may arrive on a new GPU per layer:
                            -1 (default) = no limit, else 0..EPLB_MAX_SLOTS */
  double move_cost;      /* imbalance traded per moved replica, 0..1
                            (default EPLB_DEFAULT_MOVE_COST) */
  double keep_threshold; /* a layer whose current imbalance is at most this
                            is kept as it is, 0..100 (default
                            EPLB_DEFAULT_KEEP_THRESHOLD) */
  /* Hierarchical plans only (balanced policy): let the hottest experts
   * spill replicas to cooler nodes.  See docs/planner.md. */
  int32_t spill;     /* 0 (default) or 1 */
  double spill_cost; /* imbalance traded per replica placed away from its
                        group's node, 0..1 (default
                        EPLB_DEFAULT_SPILL_COST) */
  /* Threads that plan layers in parallel (layers are independent, so the
   * map is the same for any count): 1 (default) .. EPLB_MAX_PLAN_THREADS;
   * 0 = one per CPU the calling thread may run on (its affinity mask: an
   * MPI rank bound to one core gets 1; at most EPLB_MAX_PLAN_THREADS).
   * Never more threads than layers.  The threads beyond the caller are
   * kept, asleep, for the next plan (eplb_plan_warm_up). */
  int32_t threads;
} eplb_plan_opts_t;

#define EPLB_DEFAULT_SPILL_COST 0.005

#define EPLB_DEFAULT_MOVE_COST 0.002
#define EPLB_DEFAULT_KEEP_THRESHOLD 0.02

/* Defaults: policy balanced, 1 node, 1 group; slots and GPUs 0 (must be
 * set by the caller). */
void eplb_plan_opts_default(eplb_plan_opts_t *opts);

/* Checks the options against the number of experts; the error names the
 * option (as the CLI spells it) and its allowed range. */
int eplb_plan_check_opts(const eplb_plan_opts_t *opts, int32_t num_experts,
                         eplb_error_t *err);

/* 1 when these options make DeepSeek's algorithm hierarchical. */
int eplb_plan_is_hierarchical(const eplb_plan_opts_t *opts);

/* Plans one layer: load[E] -> phy2log[S].  Loads must be finite and >= 0;
 * an all-zero layer is spread evenly. */
int eplb_plan_layer(const double *load, int32_t num_experts,
                    const eplb_plan_opts_t *opts, int32_t *phy2log,
                    eplb_error_t *err);

/* Starts the threads that plans with opts.threads = `threads` use (0 = one
 * per CPU the caller may use; 1: none), so that a program can overlap
 * their start with reading its statistics: on a VM, starting and waking
 * a thread is a visible share of a whole plan (docs/planner.md).
 * Optional - eplb_plan starts missing threads itself and keeps them,
 * asleep, for the next plan.  Threads started here spin for up to 50 ms
 * waiting for that plan, then sleep.  Returns 0, or EPLB_EARG when
 * `threads` is out of range. */
int eplb_plan_warm_up(int32_t threads, eplb_error_t *err);

/* Plans every layer of `stats` into *out (which must be empty; it is
 * initialised here, with stats' layer ids). */
int eplb_plan(const eplb_stats_t *stats, const eplb_plan_opts_t *opts,
              eplb_placement_t *out, eplb_error_t *err);

/* Re-plans from `current` (the placement the experts are in now, same L,
 * E, S and G as the statistics and options): with the balanced policy, the
 * current placement improved by moves chosen for their gain in balance per
 * moved replica, or a fresh plan relabelled to overlap the current one,
 * whichever is better under max load + move_cost * mean load * moves;
 * layers within keep_threshold are kept.  With the deepseek policy,
 * DeepSeek's from-scratch plan (DeepSeek ignores the current placement).
 * Global plans only: hierarchical options are EPLB_EARG. */
int eplb_plan_from(const eplb_stats_t *stats, const eplb_placement_t *current,
                   const eplb_plan_opts_t *opts, eplb_placement_t *out,
                   eplb_error_t *err);

/* ---- scenarios ---------------------------------------------------------
 *
 * A plan is used on the traffic that comes after it.  Given several
 * workloads (scenarios: other phases, other request mixes, time windows),
 * eplb balances each of them at once instead of their sum: a GPU that is
 * balanced for each known workload holds a mix of experts that stays
 * balanced when the mix changes (docs/planner.md, "Scenarios").
 *
 * Each layer of each scenario is normalised to its own total, so scenarios
 * weigh as their weights say, whatever their volume; a scenario with no
 * traffic in a layer is left out of that layer.  The objective, per layer,
 * is the weighted mean over scenarios of each scenario's imbalance (max
 * over GPUs / mean - 1).  Replica counts come from the weighted mean of
 * the normalised scenarios; the placement serves the objective; no GPU
 * holds an expert twice.  With one scenario, the plan is exactly
 * eplb_plan's (eplb_plan_from's) of it. */

#define EPLB_MAX_SCENARIOS 1024
/* Range of a scenario's weight (SPEC@W on the command line). */
#define EPLB_MIN_SCENARIO_WEIGHT 1e-6
#define EPLB_MAX_SCENARIO_WEIGHT 1e6

typedef struct eplb_scenarios_s {
  int32_t num_scenarios;     /* K, 1..EPLB_MAX_SCENARIOS */
  const eplb_stats_t *stats; /* [K], one shape: layers, experts, layer ids */
  const double *weights;     /* [K] in EPLB_MIN..MAX_SCENARIO_WEIGHT, or
                                NULL: equal */
} eplb_scenarios_t;

/* Checks a scenario set: K in range, every histogram of stats[0]'s shape
 * and layer ids, with valid counts, weights in range; the error names the
 * scenario (from 0). */
int eplb_scenarios_check(const eplb_scenarios_t *sc, eplb_error_t *err);

/* eplb_plan for a scenario set.  The deepseek policy plans the weighted
 * mean of the normalised scenarios (DeepSeek's algorithm knows one load
 * per expert). */
int eplb_plan_scenarios(const eplb_scenarios_t *sc,
                        const eplb_plan_opts_t *opts, eplb_placement_t *out,
                        eplb_error_t *err);

/* eplb_plan_from for a scenario set: a layer whose imbalance, as the
 * objective above measures it, is at most keep_threshold is kept; else
 * the re-plan of the weighted mean, improved for the objective by swaps
 * that pay move_cost per moved replica (max_moves holds). */
int eplb_plan_scenarios_from(const eplb_scenarios_t *sc,
                             const eplb_placement_t *current,
                             const eplb_plan_opts_t *opts,
                             eplb_placement_t *out, eplb_error_t *err);

/* Replicas that must arrive on a GPU which did not hold that expert, to go
 * from `from` to `to` (same shape): the experts a migration receives.
 * -1 if the shapes differ. */
int64_t eplb_placement_moves(const eplb_placement_t *from,
                             const eplb_placement_t *to);

/* "balanced" / "deepseek"; -1 if unknown. */
int eplb_policy_from_name(const char *name);
const char *eplb_policy_name(eplb_policy_t policy);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_PLAN_H */
