/* sync/scenarios.c - what a scenario run (eplb_sync_run_scenarios,
 * eplb-sync --scenario) adds to the pipeline: each rank's K histograms
 * checked and copied before the first agreement (so that a rank whose
 * scenario is bad or of another shape is named, not waited for), the
 * buffer of the one allreduce that sums them all, the per-scenario fields
 * of the result, and their weighted means.  The reduce of the scenarios
 * is in reduce.c, rank 0's plan of them in root_plan.c. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sync/internal.h"
#include "util/checksum.h"

void eplb__scenarios_free(eplb__scenarios_t *s) {
  if (s == NULL)
    return;
  for (int32_t k = 0; k < s->num && s->stats; k++)
    eplb_stats_cleanup(&s->stats[k]);
  free(s->stats);
  free(s->weights);
  free(s->pack);
  memset(s, 0, sizeof(*s));
}

/* Scenario k of local, against scenario 0 (names as messages give them). */
static int check_one(const eplb_scenarios_t *local, int32_t k, const char *name,
                     const char *name0, eplb_error_t *err) {
  const eplb_stats_t *a = &local->stats[k], *z = &local->stats[0];
  int rc = eplb__sync_check_local(a, name, err);
  if (rc)
    return rc;
  if (a->num_layers != z->num_layers || a->num_experts != z->num_experts ||
      memcmp(a->layer_ids, z->layer_ids,
             sizeof(int32_t) * (size_t)z->num_layers) != 0)
    return eplb_error_set(
        err, EPLB_ESHAPE,
        "scenario %d (%s) has %d layers x %d experts but scenario 0 (%s) has "
        "%d x %d (or other layer ids); every scenario must count the same "
        "MoE layers and experts",
        (int)k, name, (int)a->num_layers, (int)a->num_experts, name0,
        (int)z->num_layers, (int)z->num_experts);
  double w = local->weights ? local->weights[k] : 1.0;
  if (!(w >= EPLB_MIN_SCENARIO_WEIGHT && w <= EPLB_MAX_SCENARIO_WEIGHT))
    return eplb_error_set(
        err, EPLB_EARG, "scenario %d (%s): weight %g is outside %g..%g", (int)k,
        name, w, EPLB_MIN_SCENARIO_WEIGHT, EPLB_MAX_SCENARIO_WEIGHT);
  return 0;
}

/* The per-scenario fields of res, names copied. */
static int result_alloc(eplb_sync_result_t *res, int32_t K,
                        const char *const *names, eplb_error_t *err) {
  res->scenario_names = calloc((size_t)K, sizeof(char *));
  res->scenario_weights = calloc((size_t)K, sizeof(double));
  res->scenario_before = calloc((size_t)K, sizeof(double));
  res->scenario_after = calloc((size_t)K, sizeof(double));
  int ok = res->scenario_names && res->scenario_weights &&
           res->scenario_before && res->scenario_after;
  res->num_scenarios = ok ? K : 0;
  for (int32_t k = 0; ok && k < K; k++) {
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "scenario %d", (int)k);
    const char *n = names && names[k] ? names[k] : tmp;
    res->scenario_names[k] = malloc(strlen(n) + 1);
    ok = res->scenario_names[k] != NULL;
    if (ok)
      memcpy(res->scenario_names[k], n, strlen(n) + 1);
  }
  return ok ? 0 : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
}

int eplb__scenarios_prepare(eplb__scenarios_t *s, const eplb_scenarios_t *local,
                            const char *const *names, const char *const *labels,
                            eplb_sync_result_t *res, eplb_error_t *err) {
  memset(s, 0, sizeof(*s));
  if (local == NULL || local->stats == NULL || local->num_scenarios < 1 ||
      local->num_scenarios > EPLB_MAX_SCENARIOS)
    return eplb_error_set(err, EPLB_EARG, "%d scenarios: give 1..%d",
                          local && local->stats ? (int)local->num_scenarios : 0,
                          EPLB_MAX_SCENARIOS);
  int32_t K = local->num_scenarios;
  char n0[32] = "scenario 0";
  const char *name0 = names && names[0] ? names[0] : n0;
  int rc = 0;
  for (int32_t k = 0; k < K && rc == 0; k++) {
    char nk[32];
    snprintf(nk, sizeof(nk), "scenario %d", (int)k);
    rc = check_one(local, k, names && names[k] ? names[k] : nk, name0, err);
  }
  if (rc)
    return rc;
  const eplb_stats_t *z = &local->stats[0];
  double n = (double)K * z->num_layers * z->num_experts;
  if (n > INT_MAX)
    return eplb_error_set(err, EPLB_EARG,
                          "%d scenarios x %d layers x %d experts are %.0f "
                          "counts, more than one MPI_Allreduce sums (%d); "
                          "use fewer scenarios",
                          (int)K, (int)z->num_layers, (int)z->num_experts, n,
                          INT_MAX);
  s->stats = calloc((size_t)K, sizeof(eplb_stats_t));
  s->weights = malloc(sizeof(double) * (size_t)K);
  s->pack = malloc(sizeof(double) * (size_t)n);
  if (!s->stats || !s->weights || !s->pack)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory for %d scenarios",
                        (int)K);
  for (int32_t k = 0; k < K && rc == 0; k++) {
    rc = eplb_stats_copy(&s->stats[k], &local->stats[k], err);
    s->num = k + 1;
    s->weights[k] = local->weights ? local->weights[k] : 1.0;
  }
  if (rc == 0)
    rc = result_alloc(res, K, labels ? labels : names, err);
  if (rc == 0)
    memcpy(res->scenario_weights, s->weights, sizeof(double) * (size_t)K);
  if (rc)
    eplb__scenarios_free(s);
  return rc;
}

uint64_t eplb__scenarios_key(const eplb__scenarios_t *s, uint64_t seed) {
  double k = s->num;
  uint64_t c = eplb__checksum(&k, sizeof(k), seed ^ 0x7363656eULL);
  return eplb__checksum(s->weights, sizeof(double) * (size_t)s->num, c);
}

void eplb__scenarios_means(eplb_sync_result_t *res) {
  double w = 0, b = 0, a = 0;
  for (int32_t k = 0; k < res->num_scenarios; k++) {
    w += res->scenario_weights[k];
    b += res->scenario_weights[k] * res->scenario_before[k];
    a += res->scenario_weights[k] * res->scenario_after[k];
  }
  res->scenario_mean_before = w > 0 ? b / w : 0;
  res->scenario_mean_after = w > 0 ? a / w : 0;
}
