/* sync/root_plan.c - the plan stage of the pipeline: rank 0 plans the
 * summed histogram (from the current placement when there is one) and
 * measures the plan, before the distribute stage sends it to every rank. */
#include <string.h>

#include "eplb/formats.h"
#include "eplb/metrics.h"
#include "sync/internal.h"

/* The metrics of res on rank 0: balance before (current or contiguous) and
 * after, floor, moves. */
static int root_metrics(const eplb_stats_t *sum, const eplb_placement_t *before,
                        const eplb_placement_t *plan, eplb_sync_result_t *res,
                        eplb_error_t *err) {
  eplb_balance_t b0, b1;
  int rc = eplb_balance(sum, before, &b0, err);
  if (rc == 0)
    rc = eplb_balance(sum, plan, &b1, err);
  if (rc)
    return rc;
  res->imbalance_before = b0.imbalance;
  res->imbalance_after = b1.imbalance;
  res->floor = b1.floor;
  res->moves = eplb_placement_moves(before, plan);
  return 0;
}

/* opts->current, checked against the statistics and the options. */
static int check_current(const eplb_stats_t *sum, const eplb_sync_opts_t *opts,
                         eplb_error_t *err) {
  const eplb_placement_t *c = opts->current;
  if (c->num_layers != sum->num_layers ||
      c->num_slots != opts->plan.num_slots ||
      c->num_gpus != opts->plan.num_gpus || c->num_experts != sum->num_experts)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "the current placement holds %d layers x %d slots on %d GPUs for %d "
        "experts, but the summed statistics have %d layers x %d experts and "
        "the options say %d slots on %d GPUs; give the map of this model",
        (int)c->num_layers, (int)c->num_slots, (int)c->num_gpus,
        (int)c->num_experts, (int)sum->num_layers, (int)sum->num_experts,
        (int)opts->plan.num_slots, (int)opts->plan.num_gpus);
  return eplb_placement_check(c, 0, "the current placement", err);
}

int eplb__sync_plan_root(const eplb_stats_t *sum, const eplb_sync_opts_t *opts,
                         eplb_placement_t *plan, eplb_sync_result_t *res,
                         eplb_error_t *err) {
  eplb_placement_t contiguous = {0}, from_file = {0};
  eplb_sync_opts_t o = *opts;
  int rc = 0;
  if (o.current == NULL && o.current_map) {
    rc = eplb_placement_read_for(&from_file, o.current_map, sum,
                                 o.plan.num_slots, o.plan.num_gpus,
                                 "--current-map", err);
    if (rc)
      return rc;
    o.current = &from_file;
  } else if (o.current) {
    rc = check_current(sum, &o, err); /* the caller's, unchecked so far */
    if (rc)
      return rc;
  }
  opts = &o;
  const eplb_placement_t *before = opts->current;
  if (before == NULL) {
    rc = eplb_placement_init_contiguous(&contiguous, sum->num_layers,
                                        sum->num_experts, opts->plan.num_slots,
                                        opts->plan.num_gpus, err);
    before = &contiguous;
  }
  if (rc == 0)
    rc = opts->current
             ? eplb_plan_from(sum, opts->current, &opts->plan, plan, err)
             : eplb_plan(sum, &opts->plan, plan, err);
  if (rc == 0)
    rc = root_metrics(sum, before, plan, res, err);
  if (rc)
    eplb_placement_cleanup(plan);
  eplb_placement_cleanup(&contiguous);
  eplb_placement_cleanup(&from_file);
  return rc;
}
