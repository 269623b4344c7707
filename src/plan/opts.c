/* plan/opts.c - the planner's options: their defaults, their ranges (every
 * integer option has a minimum and a maximum, checked here once per plan),
 * and the names of the policies. */
#include <string.h>

#include "plan/internal.h"

void eplb_plan_opts_default(eplb_plan_opts_t *opts) {
  memset(opts, 0, sizeof(*opts));
  opts->num_nodes = 1;
  opts->num_groups = 1;
  opts->policy = EPLB_POLICY_BALANCED;
  opts->max_moves = -1;
  opts->move_cost = EPLB_DEFAULT_MOVE_COST;
  opts->keep_threshold = EPLB_DEFAULT_KEEP_THRESHOLD;
  opts->spill = 0;
  opts->spill_cost = EPLB_DEFAULT_SPILL_COST;
  opts->threads = 1;
}

int eplb_plan_is_hierarchical(const eplb_plan_opts_t *opts) {
  return opts->num_nodes > 1 && opts->num_groups % opts->num_nodes == 0;
}

int eplb__plan_check_threads(int32_t threads, eplb_error_t *err) {
  if (threads < EPLB_MIN_PLAN_THREADS || threads > EPLB_MAX_PLAN_THREADS)
    return eplb_error_set(
        err, EPLB_EARG, "--threads %d is outside %d..%d (0: one per CPU)",
        (int)threads, EPLB_MIN_PLAN_THREADS, EPLB_MAX_PLAN_THREADS);
  return 0;
}

int eplb_plan_check_opts(const eplb_plan_opts_t *o, int32_t E,
                         eplb_error_t *err) {
  if (E < 1 || E > EPLB_MAX_EXPERTS)
    return eplb_error_set(err, EPLB_EARG, "%d experts is outside 1..%d", (int)E,
                          EPLB_MAX_EXPERTS);
  if (o->policy != EPLB_POLICY_BALANCED && o->policy != EPLB_POLICY_DEEPSEEK)
    return eplb_error_set(
        err, EPLB_EARG, "--policy: unknown policy %d; use balanced or deepseek",
        (int)o->policy);
  if (o->num_gpus < EPLB_MIN_GPUS || o->num_gpus > EPLB_MAX_GPUS)
    return eplb_error_set(err, EPLB_EARG, "--num-gpus %d is outside %d..%d",
                          (int)o->num_gpus, EPLB_MIN_GPUS, EPLB_MAX_GPUS);
  if (o->num_slots < EPLB_MIN_SLOTS || o->num_slots > EPLB_MAX_SLOTS)
    return eplb_error_set(err, EPLB_EARG, "--num-slots %d is outside %d..%d",
                          (int)o->num_slots, EPLB_MIN_SLOTS, EPLB_MAX_SLOTS);
  if (o->num_slots < E)
    return eplb_error_set(err, EPLB_EARG,
                          "--num-slots %d is less than the %d experts; every "
                          "expert needs a slot",
                          (int)o->num_slots, (int)E);
  if (o->num_slots % o->num_gpus != 0)
    return eplb_error_set(err, EPLB_EARG,
                          "--num-slots %d is not a multiple of --num-gpus %d; "
                          "every GPU holds the same number of slots",
                          (int)o->num_slots, (int)o->num_gpus);
  if (o->num_nodes < EPLB_MIN_NODES || o->num_nodes > o->num_gpus)
    return eplb_error_set(err, EPLB_EARG,
                          "--num-nodes %d is outside %d..%d (--num-gpus)",
                          (int)o->num_nodes, EPLB_MIN_NODES, (int)o->num_gpus);
  if (o->num_gpus % o->num_nodes != 0)
    return eplb_error_set(err, EPLB_EARG,
                          "--num-gpus %d is not a multiple of --num-nodes %d",
                          (int)o->num_gpus, (int)o->num_nodes);
  if (o->num_groups < EPLB_MIN_GROUPS || o->num_groups > E)
    return eplb_error_set(err, EPLB_EARG,
                          "--num-groups %d is outside %d..%d (the number of "
                          "experts)",
                          (int)o->num_groups, EPLB_MIN_GROUPS, (int)E);
  if (o->max_moves < -1 || o->max_moves > EPLB_MAX_SLOTS)
    return eplb_error_set(err, EPLB_EARG,
                          "--max-moves %d is outside -1..%d (-1: no limit)",
                          (int)o->max_moves, EPLB_MAX_SLOTS);
  if (!(o->move_cost >= 0 && o->move_cost <= 1))
    return eplb_error_set(err, EPLB_EARG, "--move-cost %g is outside 0..1",
                          o->move_cost);
  if (!(o->keep_threshold >= 0 && o->keep_threshold <= 100))
    return eplb_error_set(err, EPLB_EARG,
                          "--keep-threshold %g is outside 0..100",
                          o->keep_threshold);
  if (o->spill != 0 && o->spill != 1)
    return eplb_error_set(err, EPLB_EARG, "--spill: %d is not 0 or 1",
                          (int)o->spill);
  if (!(o->spill_cost >= 0 && o->spill_cost <= 1))
    return eplb_error_set(err, EPLB_EARG, "--spill-cost %g is outside 0..1",
                          o->spill_cost);
  if (eplb__plan_check_threads(o->threads, err) != 0)
    return EPLB_EARG;
  if (o->spill &&
      !(eplb_plan_is_hierarchical(o) && o->policy == EPLB_POLICY_BALANCED))
    return eplb_error_set(err, EPLB_EARG,
                          "--spill needs a hierarchical plan (--num-nodes > 1 "
                          "dividing --num-groups) and --policy balanced");
  int32_t per = o->num_slots / o->num_gpus;
  if (eplb_plan_is_hierarchical(o)) {
    if (E % o->num_groups != 0)
      return eplb_error_set(err, EPLB_EARG,
                            "%d experts are not a multiple of --num-groups %d; "
                            "hierarchical plans need equal groups",
                            (int)E, (int)o->num_groups);
    /* Each node gets K/N groups and S/N slots: S % N follows from
     * S % G == 0 and G % N == 0. */
    if (o->policy == EPLB_POLICY_BALANCED && per > E / o->num_nodes)
      return eplb_error_set(err, EPLB_EARG,
                            "%d slots per GPU exceed the %d experts of a node: "
                            "a GPU would hold an expert twice; use fewer slots "
                            "or --policy deepseek",
                            (int)per, (int)(E / o->num_nodes));
  } else if (o->policy == EPLB_POLICY_BALANCED && per > E) {
    return eplb_error_set(err, EPLB_EARG,
                          "%d slots per GPU exceed the %d experts: a GPU would "
                          "hold an expert twice; use fewer slots or --policy "
                          "deepseek",
                          (int)per, (int)E);
  }
  return 0;
}
int eplb_policy_from_name(const char *name) {
  if (strcmp(name, "balanced") == 0)
    return EPLB_POLICY_BALANCED;
  if (strcmp(name, "deepseek") == 0)
    return EPLB_POLICY_DEEPSEEK;
  return -1;
}

const char *eplb_policy_name(eplb_policy_t policy) {
  switch (policy) {
  case EPLB_POLICY_BALANCED: return "balanced";
  case EPLB_POLICY_DEEPSEEK: return "deepseek";
  }
  return "unknown";
}
