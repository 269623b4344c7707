/* sync/root_plan.c - the plan stage of the pipeline: rank 0 plans the
 * summed histogram, or the summed scenarios (from the current placement
 * when there is one), and measures the plan, before the distribute stage
 * sends it to every rank. */
#include <string.h>

#include "eplb/formats.h"
#include "eplb/metrics.h"
#include "eplb/report.h"
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

/* opts->current, checked against the statistics and the options (its
 * MTP layers, if any, already set aside). */
static int check_current(const eplb_stats_t *sum, const eplb_placement_t *c,
                         const eplb_sync_opts_t *opts, eplb_error_t *err) {
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

/* The placement the plan starts from: opts->current (checked), the map
 * opts->current_map (read into *from_file), else none; *before is it, or
 * the contiguous placement (into *contiguous).  `sum` gives the shape. */
static int resolve_before(const eplb_stats_t *sum, const eplb_sync_opts_t *opts,
                          const eplb_placement_t **current,
                          const eplb_placement_t **before,
                          eplb_placement_t *contiguous,
                          eplb_placement_t *from_file, eplb_error_t *err) {
  int rc = 0;
  *current = opts->current;
  if (opts->current == NULL && opts->current_map) {
    rc = eplb_placement_read_for_mtp(from_file, opts->current_map, sum,
                                     opts->plan.num_slots, opts->plan.num_gpus,
                                     opts->mtp_layers, "--current-map", err);
    if (rc)
      return rc;
    *current = from_file;
  } else if (opts->current) {
    /* The caller's placement may hold the MTP layers it was given. */
    if (opts->mtp_layers > 0 &&
        opts->current->num_layers == sum->num_layers + opts->mtp_layers) {
      rc = eplb_placement_copy(from_file, opts->current, err);
      if (rc == 0)
        rc = eplb_placement_drop_last_layers(from_file, opts->mtp_layers, err);
      if (rc)
        return rc;
      *current = from_file;
    }
    rc = check_current(sum, *current, opts, err); /* unchecked so far */
    if (rc)
      return rc;
  }
  *before = *current;
  if (*before == NULL) {
    rc = eplb_placement_init_contiguous(contiguous, sum->num_layers,
                                        sum->num_experts, opts->plan.num_slots,
                                        opts->plan.num_gpus, err);
    *before = contiguous;
  }
  return rc;
}

/* The plan as consumers load it: the MTP layers appended, and the map
 * checked against its output format (a duplicate the expert-map JSON
 * refuses), so that a map that cannot be written fails every rank at the
 * distribute stage, before any weight moves. */
static int finish_plan(const eplb_sync_opts_t *opts, eplb_placement_t *plan,
                       eplb_error_t *err) {
  int rc = eplb_placement_append_layers(plan, opts->mtp_layers, opts->mtp_from,
                                        err);
  eplb_map_write_opts_t wo = {.allow_duplicates = opts->allow_duplicates};
  if (rc == 0 && opts->output)
    rc = eplb_placement_check_writable(plan, opts->output, opts->output_format,
                                       &wo, err);
  return rc;
}

int eplb__sync_plan_root(const eplb_stats_t *sum, const eplb_sync_opts_t *opts,
                         eplb_placement_t *plan, eplb_sync_result_t *res,
                         eplb_error_t *err) {
  eplb_placement_t contiguous = {0}, from_file = {0};
  const eplb_placement_t *current = NULL, *before = NULL;
  int rc = resolve_before(sum, opts, &current, &before, &contiguous, &from_file,
                          err);
  if (rc == 0)
    rc = current ? eplb_plan_from(sum, current, &opts->plan, plan, err)
                 : eplb_plan(sum, &opts->plan, plan, err);
  if (rc == 0)
    rc = root_metrics(sum, before, plan, res, err);
  if (rc == 0)
    rc = finish_plan(opts, plan, err);
  if (rc)
    eplb_placement_cleanup(plan);
  eplb_placement_cleanup(&contiguous);
  eplb_placement_cleanup(&from_file);
  return rc;
}

/* Each scenario's imbalance before and after (on rank 0). */
static int scenario_metrics(const eplb_scenarios_t *sc,
                            const eplb_placement_t *before,
                            const eplb_placement_t *plan,
                            eplb_sync_result_t *res, eplb_error_t *err) {
  for (int32_t k = 0; k < sc->num_scenarios; k++) {
    eplb_balance_t b0, b1;
    int rc = eplb_balance(&sc->stats[k], before, &b0, err);
    if (rc == 0)
      rc = eplb_balance(&sc->stats[k], plan, &b1, err);
    if (rc)
      return rc;
    res->scenario_before[k] = b0.imbalance;
    res->scenario_after[k] = b1.imbalance;
  }
  return 0;
}

int eplb__sync_plan_root_scenarios(const eplb__scenarios_t *s,
                                   const eplb_sync_opts_t *opts,
                                   eplb_placement_t *plan,
                                   eplb_sync_result_t *res, eplb_error_t *err) {
  eplb_scenarios_t sc = {s->num, s->stats, s->weights};
  eplb_placement_t contiguous = {0}, from_file = {0};
  const eplb_placement_t *current = NULL, *before = NULL;
  eplb_stats_t mean = {0};
  /* The metrics are reported on the weighted mean, as eplb-plan does. */
  int rc = eplb_report_scenarios_mean(&sc, &mean, err);
  if (rc == 0)
    rc = resolve_before(&s->stats[0], opts, &current, &before, &contiguous,
                        &from_file, err);
  if (rc == 0)
    rc = current
             ? eplb_plan_scenarios_from(&sc, current, &opts->plan, plan, err)
             : eplb_plan_scenarios(&sc, &opts->plan, plan, err);
  if (rc == 0)
    rc = root_metrics(&mean, before, plan, res, err);
  if (rc == 0)
    rc = scenario_metrics(&sc, before, plan, res, err);
  if (rc == 0)
    rc = finish_plan(opts, plan, err);
  if (rc)
    eplb_placement_cleanup(plan);
  eplb_stats_cleanup(&mean);
  eplb_placement_cleanup(&contiguous);
  eplb_placement_cleanup(&from_file);
  return rc;
}
