/* report.c - the computations behind eplb-report: per-layer mean, standard
 * deviation and imbalance ratio of the per-GPU load (TensorRT-LLM's table),
 * and the expert-level balance metrics (coefficient of variation, hottest
 * expert's share).
 *
 * Kept apart from the program and from the writers (report_out.c) so that
 * every number the user reads is a pure function of the statistics and the
 * placements, checked by unit tests (tests/test_report.c) on hand-computed
 * cases. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/metrics.h"
#include "eplb/report.h"
#include "eplb/series.h"

void eplb_report_table_cleanup(eplb_report_table_t *t) {
  if (t == NULL)
    return;
  free(t->gpu_load);
  free(t->mean);
  free(t->std);
  free(t->ratio);
  memset(t, 0, sizeof(*t));
}

/* Allocates the arrays of an L-layer, G-GPU table.  Returns 0 or
 * EPLB_ENOMEM (t left empty). */
static int table_alloc(eplb_report_table_t *t, int32_t L, int32_t G,
                       eplb_error_t *err) {
  memset(t, 0, sizeof(*t));
  t->num_layers = L;
  t->num_gpus = G;
  t->gpu_load = calloc((size_t)L * (size_t)G, sizeof(double));
  t->mean = calloc((size_t)L, sizeof(double));
  t->std = calloc((size_t)L, sizeof(double));
  t->ratio = calloc((size_t)L, sizeof(double));
  if (t->gpu_load && t->mean && t->std && t->ratio)
    return 0;
  eplb_report_table_cleanup(t);
  return eplb_error_set(err, EPLB_ENOMEM,
                        "out of memory for a %d x %d "
                        "report table",
                        (int)L, (int)G);
}

/* Mean, sample standard deviation (n - 1 in the denominator, as torch.std
 * computes it in TensorRT-LLM's report; 0 for n = 1) and imbalance ratio
 * max/mean - 1 (0 for an all-zero row) of one row of n values. */
static void row_stats(const double *v, int32_t n, double *mean, double *std,
                      double *ratio) {
  double sum = 0, mx = 0, sq = 0;
  for (int32_t i = 0; i < n; i++) {
    sum += v[i];
    if (v[i] > mx)
      mx = v[i];
  }
  *mean = sum / n;
  for (int32_t i = 0; i < n; i++)
    sq += (v[i] - *mean) * (v[i] - *mean);
  *std = n > 1 ? sqrt(sq / (n - 1)) : 0;
  *ratio = *mean > 0 ? mx / *mean - 1 : 0;
}

/* The average row and the worst layer. */
static void table_summary(eplb_report_table_t *t) {
  int32_t L = t->num_layers;
  for (int32_t l = 0; l < L; l++) {
    t->avg_mean += t->mean[l] / L;
    t->avg_std += t->std[l] / L;
    t->avg_ratio += t->ratio[l] / L;
    if (l == 0 || t->ratio[l] > t->max_ratio) {
      t->max_ratio = t->ratio[l];
      t->worst_layer = l;
    }
  }
}

int eplb_report_table(eplb_report_table_t *t, const eplb_stats_t *s,
                      const eplb_placement_t *p, eplb_error_t *err) {
  memset(t, 0, sizeof(*t));
  if (s == NULL || p == NULL || s->load == NULL || p->phy2log == NULL)
    return eplb_error_set(err, EPLB_EARG, "report: no statistics or map");
  if (p->num_layers != s->num_layers || p->num_experts > s->num_experts ||
      p->num_gpus < 1 || p->num_slots % p->num_gpus != 0)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "report: the map has %d layers, experts 0..%d, %d "
                          "slots on %d GPUs but the statistics have %d "
                          "layers x %d experts; pass a map of the same model",
                          (int)p->num_layers, (int)p->num_experts - 1,
                          (int)p->num_slots, (int)p->num_gpus,
                          (int)s->num_layers, (int)s->num_experts);
  int32_t L = s->num_layers, E = s->num_experts, G = p->num_gpus;
  int rc = table_alloc(t, L, G, err);
  for (int32_t l = 0; rc == 0 && l < L; l++) {
    double *row = t->gpu_load + (size_t)l * (size_t)G;
    rc = eplb_gpu_loads(s->load + (size_t)l * (size_t)E, E,
                        p->phy2log + (size_t)l * (size_t)p->num_slots,
                        p->num_slots, G, row, err);
    if (rc == 0)
      row_stats(row, G, &t->mean[l], &t->std[l], &t->ratio[l]);
  }
  if (rc) {
    eplb_error_prefix(err, "report");
    eplb_report_table_cleanup(t);
    return rc;
  }
  table_summary(t);
  return 0;
}

/* The scenarios of a report (eplb_report_add_scenarios), freed. */
static void scenarios_free(eplb_report_scenarios_t *s) {
  if (s == NULL)
    return;
  for (int32_t k = 0; k < s->num_scenarios; k++) {
    eplb_report_table_cleanup(&s->scenario[k].before);
    eplb_report_table_cleanup(&s->scenario[k].after);
  }
  free(s->scenario);
  /* eplb_report_cv_cleanup's work, here: report_scenarios.c uses this
   * file, not the other way round. */
  free(s->cv.robust);
  free(s->cv.balanced);
  free(s->cv.deepseek);
  free(s);
}

void eplb_report_cleanup(eplb_report_t *r) {
  if (r == NULL)
    return;
  scenarios_free(r->scenarios);
  eplb_report_table_cleanup(&r->before);
  eplb_report_table_cleanup(&r->after);
  free(r->layer_ids);
  free(r->cv);
  free(r->hot_share);
  free(r->hot_expert);
  memset(r, 0, sizeof(*r));
}

/* The expert-level metrics of every layer and their means. */
static void expert_metrics(eplb_report_t *r, const eplb_stats_t *s) {
  int32_t L = s->num_layers, E = s->num_experts;
  for (int32_t l = 0; l < L; l++) {
    const double *row = s->load + (size_t)l * (size_t)E;
    double mean, std, ratio, mx = -1;
    row_stats(row, E, &mean, &std, &ratio);
    for (int32_t e = 0; e < E; e++)
      if (row[e] > mx) {
        mx = row[e];
        r->hot_expert[l] = e;
      }
    r->cv[l] = mean > 0 ? std / mean : 0; /* sample std, as above */
    r->hot_share[l] = mean > 0 ? mx / (mean * E) : 0;
    r->avg_cv += r->cv[l] / L;
    r->avg_hot_share += r->hot_share[l] / L;
    if (l == 0 || r->hot_share[l] > r->max_hot_share) {
      r->max_hot_share = r->hot_share[l];
      r->max_hot_layer = l;
    }
  }
}

int eplb_report_compute(eplb_report_t *r, const eplb_stats_t *s,
                        const eplb_placement_t *before,
                        const eplb_placement_t *after, eplb_error_t *err) {
  memset(r, 0, sizeof(*r));
  if (s == NULL || s->num_layers < 1 || s->num_experts < 1)
    return eplb_error_set(err, EPLB_EARG, "report: empty statistics");
  int32_t L = s->num_layers;
  r->num_layers = L;
  r->num_experts = s->num_experts;
  r->layer_ids = malloc(sizeof(int32_t) * (size_t)L);
  r->cv = calloc((size_t)L, sizeof(double));
  r->hot_share = calloc((size_t)L, sizeof(double));
  r->hot_expert = calloc((size_t)L, sizeof(int32_t));
  int rc = 0;
  if (!r->layer_ids || !r->cv || !r->hot_share || !r->hot_expert)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory for the report");
  if (rc == 0)
    rc = eplb_report_table(&r->before, s, before, err);
  if (rc == 0 && after != NULL) {
    rc = eplb_report_table(&r->after, s, after, err);
    r->has_after = rc == 0;
  }
  if (rc) {
    eplb_report_cleanup(r);
    return rc;
  }
  memcpy(r->layer_ids, s->layer_ids, sizeof(int32_t) * (size_t)L);
  expert_metrics(r, s);
  r->num_steps = 1;
  return 0;
}

/* Replaces t's mean, std and ratio by their averages over the steps of s
 * (each step's table computed on placement p); gpu_load stays the sum's. */
static int average_steps(eplb_report_table_t *t, const eplb_series_t *s,
                         const eplb_placement_t *p, eplb_error_t *err) {
  int32_t L = s->num_layers, T = s->num_steps;
  memset(t->mean, 0, sizeof(double) * (size_t)L);
  memset(t->std, 0, sizeof(double) * (size_t)L);
  memset(t->ratio, 0, sizeof(double) * (size_t)L);
  eplb_stats_t view = {.num_layers = L,
                       .num_experts = s->num_experts,
                       .layer_ids = s->layer_ids};
  for (int32_t k = 0; k < T; k++) {
    eplb_report_table_t one;
    view.load = s->load + (size_t)k * (size_t)L * (size_t)s->num_experts;
    int rc = eplb_report_table(&one, &view, p, err);
    if (rc)
      return rc;
    for (int32_t l = 0; l < L; l++) {
      t->mean[l] += one.mean[l] / T;
      t->std[l] += one.std[l] / T;
      t->ratio[l] += one.ratio[l] / T;
    }
    eplb_report_table_cleanup(&one);
  }
  t->avg_mean = t->avg_std = t->avg_ratio = t->max_ratio = 0;
  table_summary(t);
  return 0;
}

/* The sum over the steps of s into *sum (empty on failure). */
static int sum_steps(const eplb_series_t *s, eplb_stats_t *sum,
                     eplb_error_t *err) {
  int rc = eplb_stats_init(sum, s->num_layers, s->num_experts, err);
  if (rc)
    return rc;
  size_t n = (size_t)s->num_layers * (size_t)s->num_experts;
  memcpy(sum->layer_ids, s->layer_ids, sizeof(int32_t) * (size_t)s->num_layers);
  for (int32_t k = 0; k < s->num_steps; k++)
    for (size_t i = 0; i < n; i++)
      sum->load[i] += s->load[(size_t)k * n + i];
  return 0;
}

int eplb_report_compute_series(eplb_report_t *r, const eplb_series_t *s,
                               const eplb_placement_t *before,
                               const eplb_placement_t *after,
                               eplb_error_t *err) {
  memset(r, 0, sizeof(*r));
  if (s == NULL || s->num_steps < 1 || s->load == NULL)
    return eplb_error_set(err, EPLB_EARG, "report: empty series");
  eplb_stats_t sum;
  int rc = sum_steps(s, &sum, err);
  if (rc == 0)
    rc = eplb_report_compute(r, &sum, before, after, err);
  if (rc == 0)
    rc = average_steps(&r->before, s, before, err);
  if (rc == 0 && after != NULL)
    rc = average_steps(&r->after, s, after, err);
  eplb_stats_cleanup(&sum);
  if (rc) {
    eplb_report_cleanup(r);
    return rc;
  }
  r->num_steps = s->num_steps;
  return 0;
}
