/* report_scenarios.c - the report of several workloads (scenarios): each
 * one's load under the report's placements, their weighted mean, and the
 * forecast a user can trust: leave-one-out cross-validation, where every
 * scenario in turn is judged on plans made from the others only.
 *
 * Why leave-one-out: a plan is only ever used on traffic that comes after
 * it, and in-sample imbalance says nothing about that (a plan of a load is
 * nearly perfect on that load).  Judging each known workload on plans
 * that never saw it is the closest measure of what to expect on the next
 * one (docs/eplb-report.md, docs/planner.md "Scenarios"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/metrics.h"
#include "eplb/report.h"

int eplb_report_scenarios_mean(const eplb_scenarios_t *sc, eplb_stats_t *out,
                               eplb_error_t *err) {
  int rc = eplb_scenarios_check(sc, err);
  if (rc)
    return rc;
  const eplb_stats_t *s0 = &sc->stats[0];
  int32_t L = s0->num_layers, E = s0->num_experts;
  rc = eplb_stats_init(out, L, E, err);
  if (rc)
    return rc;
  memcpy(out->layer_ids, s0->layer_ids, sizeof(int32_t) * (size_t)L);
  for (int32_t l = 0; l < L; l++) {
    double wsum = 0;
    double *o = out->load + (size_t)l * E;
    for (int32_t k = 0; k < sc->num_scenarios; k++) {
      const double *x = sc->stats[k].load + (size_t)l * E;
      double w = sc->weights ? sc->weights[k] : 1.0, t = 0;
      for (int32_t e = 0; e < E; e++)
        t += x[e];
      if (t <= 0)
        continue;
      wsum += w;
      for (int32_t e = 0; e < E; e++)
        o[e] += w * x[e] / t;
    }
    for (int32_t e = 0; wsum > 0 && e < E; e++)
      o[e] /= wsum;
  }
  return 0;
}

/* ---- each scenario under the report's placements ---------------------- */

int eplb_report_add_scenarios(eplb_report_t *r, const eplb_scenarios_t *sc,
                              const char *const *names,
                              const eplb_placement_t *before,
                              const eplb_placement_t *after,
                              eplb_error_t *err) {
  int rc = eplb_scenarios_check(sc, err);
  if (rc)
    return rc;
  if (r == NULL || r->num_layers < 1 || before == NULL)
    return eplb_error_set(err, EPLB_EARG,
                          "report: compute the report before adding "
                          "scenarios");
  int32_t K = sc->num_scenarios;
  eplb_report_scenarios_t *s = calloc(1, sizeof(*s));
  eplb_report_scenario_t *v = calloc((size_t)K, sizeof(*v));
  if (s == NULL || v == NULL) {
    free(s);
    free(v);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory for %d scenarios",
                          (int)K);
  }
  s->scenario = v;
  s->num_scenarios = K;
  double wsum = 0;
  for (int32_t k = 0; k < K && rc == 0; k++) {
    if (names && names[k])
      snprintf(v[k].name, sizeof(v[k].name), "%s", names[k]);
    else
      snprintf(v[k].name, sizeof(v[k].name), "scenario %d", (int)k);
    v[k].weight = sc->weights ? sc->weights[k] : 1.0;
    rc = eplb_report_table(&v[k].before, &sc->stats[k], before, err);
    if (rc == 0 && after)
      rc = eplb_report_table(&v[k].after, &sc->stats[k], after, err);
    if (rc) {
      eplb_error_prefix(err, "%s", v[k].name);
      break;
    }
    wsum += v[k].weight;
    s->mean_before += v[k].weight * v[k].before.avg_ratio;
    s->mean_after += v[k].weight * (after ? v[k].after.avg_ratio : 0);
  }
  if (rc) {
    for (int32_t k = 0; k < K; k++) {
      eplb_report_table_cleanup(&v[k].before);
      eplb_report_table_cleanup(&v[k].after);
    }
    free(v);
    free(s);
    return rc;
  }
  s->mean_before /= wsum;
  s->mean_after /= wsum;
  r->scenarios = s;
  return 0;
}

/* ---- leave-one-out ------------------------------------------------------ */

void eplb_report_cv_cleanup(eplb_report_cv_t *cv) {
  if (cv == NULL)
    return;
  free(cv->robust);
  free(cv->balanced);
  free(cv->deepseek);
  memset(cv, 0, sizeof(*cv));
}

/* Mean over layers of the imbalance of p on st. */
static int judge(const eplb_stats_t *st, const eplb_placement_t *p, double *v,
                 eplb_error_t *err) {
  eplb_balance_t b;
  int rc = eplb_balance(st, p, &b, err);
  *v = rc ? 0 : b.imbalance;
  return rc;
}

/* The three plans of `others` (every scenario but k), judged on k. */
static int leave_out(const eplb_scenarios_t *others, const eplb_stats_t *k,
                     const eplb_plan_opts_t *opts, double out[3],
                     eplb_error_t *err) {
  eplb_plan_opts_t o = *opts;
  eplb_placement_t p = {0};
  eplb_stats_t mean = {0};
  o.policy = EPLB_POLICY_BALANCED;
  int rc = eplb_plan_scenarios(others, &o, &p, err);
  if (rc == 0)
    rc = judge(k, &p, &out[0], err);
  eplb_placement_cleanup(&p);
  if (rc == 0)
    rc = eplb_report_scenarios_mean(others, &mean, err);
  if (rc == 0)
    rc = eplb_plan(&mean, &o, &p, err);
  if (rc == 0)
    rc = judge(k, &p, &out[1], err);
  eplb_placement_cleanup(&p);
  o.policy = EPLB_POLICY_DEEPSEEK;
  if (rc == 0)
    rc = eplb_plan(&mean, &o, &p, err);
  if (rc == 0)
    rc = judge(k, &p, &out[2], err);
  eplb_placement_cleanup(&p);
  eplb_stats_cleanup(&mean);
  return rc;
}

/* cv's arrays for K scenarios; 0 or EPLB_ENOMEM. */
static int cv_alloc(eplb_report_cv_t *cv, int32_t K, eplb_error_t *err) {
  cv->robust = calloc((size_t)K, sizeof(double));
  cv->balanced = calloc((size_t)K, sizeof(double));
  cv->deepseek = calloc((size_t)K, sizeof(double));
  if (cv->robust && cv->balanced && cv->deepseek)
    return 0;
  eplb_report_cv_cleanup(cv);
  return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
}

int eplb_report_cross_validate(const eplb_scenarios_t *sc,
                               const eplb_plan_opts_t *opts,
                               eplb_report_cv_t *out, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  int rc = eplb_scenarios_check(sc, err);
  if (rc)
    return rc;
  int32_t K = sc->num_scenarios;
  if (K < 2)
    return eplb_error_set(err, EPLB_EARG,
                          "cross-validation needs two scenarios or more "
                          "(%d given): each is judged on plans of the others",
                          (int)K);
  rc = eplb_plan_check_opts(opts, sc->stats[0].num_experts, err);
  if (rc)
    return rc;
  /* The others of k: a copy of the set without k. */
  eplb_stats_t *st = malloc(sizeof(*st) * (size_t)K);
  double *w = malloc(sizeof(double) * (size_t)K);
  rc = st && w ? cv_alloc(out, K, err)
               : eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  double wsum = 0;
  for (int32_t k = 0; k < K && rc == 0; k++) {
    int32_t n = 0;
    for (int32_t j = 0; j < K; j++) {
      if (j == k)
        continue;
      st[n] = sc->stats[j];
      w[n++] = sc->weights ? sc->weights[j] : 1.0;
    }
    eplb_scenarios_t others = {n, st, w};
    double v[3];
    rc = leave_out(&others, &sc->stats[k], opts, v, err);
    if (rc) {
      eplb_error_prefix(err, "scenario %d left out", (int)k);
      break;
    }
    double wk = sc->weights ? sc->weights[k] : 1.0;
    out->robust[k] = v[0];
    out->balanced[k] = v[1];
    out->deepseek[k] = v[2];
    out->mean_robust += wk * v[0];
    out->mean_balanced += wk * v[1];
    out->mean_deepseek += wk * v[2];
    wsum += wk;
  }
  free(st);
  free(w);
  if (rc) {
    eplb_report_cv_cleanup(out);
    return rc;
  }
  out->num_scenarios = K;
  out->num_slots = opts->num_slots;
  out->num_gpus = opts->num_gpus;
  out->mean_robust /= wsum;
  out->mean_balanced /= wsum;
  out->mean_deepseek /= wsum;
  return 0;
}
