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

/* Documented ranges of the planner's integer options. */
#define EPLB_MIN_SLOTS 1
#define EPLB_MAX_SLOTS 1048576 /* 2^20 slots per layer */
#define EPLB_MIN_GPUS 1
#define EPLB_MAX_GPUS 65536
#define EPLB_MIN_NODES 1 /* at most num_gpus */
#define EPLB_MIN_GROUPS 1 /* at most num_experts */

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
} eplb_plan_opts_t;

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

/* Plans every layer of `stats` into *out (which must be empty; it is
 * initialised here, with stats' layer ids). */
int eplb_plan(const eplb_stats_t *stats, const eplb_plan_opts_t *opts,
              eplb_placement_t *out, eplb_error_t *err);

/* "balanced" / "deepseek"; -1 if unknown. */
int eplb_policy_from_name(const char *name);
const char *eplb_policy_name(eplb_policy_t policy);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_PLAN_H */
