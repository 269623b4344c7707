/* test_report.c - the computations of eplb-report (src/report/report.c) on
 * hand-computed cases: per-GPU loads with replicas splitting their expert's
 * load, mean / population std / max/mean per layer and the average row,
 * expert CV and hottest share, shape errors; and the writers: the JSON
 * parses and carries the numbers, the SVG has one cell per layer x GPU per
 * heat map and balanced tags.  Scenarios (report_scenarios.c): their
 * weighted mean, each one's tables, the leave-one-out table, and what the
 * writers make of them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eplb/eplb.h"
#include "eplb/report.h"
#include "util/fileio.h"

/* 2 layers x 4 experts. */
static void make_stats(eplb_stats_t *s) {
  static const double load[8] = {60, 20, 10, 10, /* layer 0 */
                                 0,  0,  0,  0}; /* layer 1: idle */
  assert_int_equal(eplb_stats_init(s, 2, 4, NULL), 0);
  memcpy(s->load, load, sizeof(load));
  s->layer_ids[0] = 3;
  s->layer_ids[1] = 4;
}

/* Contiguous: 4 slots on 2 GPUs. */
static void make_before(eplb_placement_t *p) {
  assert_int_equal(eplb_placement_init(p, 2, 4, 4, 2, NULL), 0);
  assert_int_equal(eplb_placement_contiguous(p, NULL), 0);
}

/* 6 slots on 2 GPUs: expert 0 on both GPUs, GPU0 {0,2,3}, GPU1 {0,1,2}. */
static void make_after(eplb_placement_t *p) {
  static const int32_t row[6] = {0, 2, 3, 0, 1, 2};
  assert_int_equal(eplb_placement_init(p, 2, 4, 6, 2, NULL), 0);
  memcpy(p->phy2log, row, sizeof(row));
  memcpy(p->phy2log + 6, row, sizeof(row));
}

static void test_table_contiguous(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_placement_t p;
  eplb_report_table_t t;
  make_stats(&s);
  make_before(&p);
  assert_int_equal(eplb_report_table(&t, &s, &p, NULL), 0);
  /* GPU0 = 60 + 20 = 80, GPU1 = 20: mean 50, sample std sqrt(1800),
   * ratio 80/50 - 1 = 0.6. */
  assert_true(fabs(t.gpu_load[0] - 80) < 1e-12);
  assert_true(fabs(t.gpu_load[1] - 20) < 1e-12);
  assert_true(fabs(t.mean[0] - 50) < 1e-12);
  assert_true(fabs(t.std[0] - sqrt(1800.0)) < 1e-12);
  assert_true(fabs(t.ratio[0] - 0.6) < 1e-12);
  /* The idle layer: ratio 0, not NaN. */
  assert_true(t.ratio[1] == 0 && t.mean[1] == 0 && t.std[1] == 0);
  assert_true(fabs(t.avg_ratio - 0.3) < 1e-12);
  assert_true(fabs(t.avg_std - sqrt(1800.0) / 2) < 1e-12);
  assert_int_equal(t.worst_layer, 0);
  eplb_report_table_cleanup(&t);
  eplb_report_table_cleanup(&t); /* idempotent */
  eplb_placement_cleanup(&p);
  eplb_stats_cleanup(&s);
}

static void test_replicas_split_load(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_placement_t p;
  eplb_report_table_t t;
  make_stats(&s);
  make_after(&p);
  assert_int_equal(eplb_report_table(&t, &s, &p, NULL), 0);
  /* Experts 0 (60) and 2 (10) have two replicas each: 30 and 5.
   * GPU0 = 30+5+10 = 45, GPU1 = 30+20+5 = 55: mean 50, sample std
   * sqrt(50), ratio 0.1. */
  assert_true(fabs(t.gpu_load[0] - 45) < 1e-12);
  assert_true(fabs(t.gpu_load[1] - 55) < 1e-12);
  assert_true(fabs(t.std[0] - sqrt(50.0)) < 1e-12);
  assert_true(fabs(t.ratio[0] - 0.1) < 1e-12);
  eplb_report_table_cleanup(&t);
  eplb_placement_cleanup(&p);
  eplb_stats_cleanup(&s);
}

static void test_compute_metrics(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_placement_t b, a;
  eplb_report_t r;
  make_stats(&s);
  make_before(&b);
  make_after(&a);
  assert_int_equal(eplb_report_compute(&r, &s, &b, &a, NULL), 0);
  assert_true(r.has_after);
  assert_int_equal(r.layer_ids[0], 3);
  /* Layer 0 experts 60,20,10,10: mean 25, std sqrt((35^2+5^2+15^2*2)/3). */
  double sd = sqrt((35.0 * 35 + 5 * 5 + 15 * 15 * 2) / 3);
  assert_true(fabs(r.cv[0] - sd / 25) < 1e-12);
  assert_true(fabs(r.hot_share[0] - 0.6) < 1e-12);
  assert_int_equal(r.hot_expert[0], 0);
  assert_true(r.cv[1] == 0 && r.hot_share[1] == 0);
  assert_true(fabs(r.avg_hot_share - 0.3) < 1e-12);
  assert_true(fabs(r.max_hot_share - 0.6) < 1e-12);
  assert_int_equal(r.max_hot_layer, 0);
  assert_true(r.after.avg_ratio < r.before.avg_ratio);
  eplb_report_cleanup(&r);
  assert_int_equal(eplb_report_compute(&r, &s, &b, NULL, NULL), 0);
  assert_false(r.has_after);
  assert_null(r.after.mean);
  eplb_report_cleanup(&r);
  eplb_placement_cleanup(&a);
  eplb_placement_cleanup(&b);
  eplb_stats_cleanup(&s);
}

static void test_shape_errors(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_placement_t p;
  eplb_report_t r;
  eplb_error_t err;
  make_stats(&s);
  assert_int_equal(eplb_placement_init(&p, 1, 4, 4, 2, NULL), 0);
  assert_int_equal(eplb_placement_contiguous(&p, NULL), 0);
  assert_int_equal(eplb_report_compute(&r, &s, &p, NULL, &err), EPLB_ESHAPE);
  assert_non_null(strstr(err.msg, "1 layers"));
  assert_null(r.layer_ids); /* left empty */
  eplb_placement_cleanup(&p);
  /* A slot holding expert 7 of a 4-expert histogram. */
  assert_int_equal(eplb_placement_init(&p, 2, 8, 8, 2, NULL), 0);
  assert_int_equal(eplb_placement_contiguous(&p, NULL), 0);
  assert_int_equal(eplb_report_compute(&r, &s, &p, NULL, &err), EPLB_ESHAPE);
  eplb_placement_cleanup(&p);
  eplb_stats_cleanup(&s);
  assert_int_equal(eplb_report_compute(&r, NULL, NULL, NULL, &err), EPLB_EARG);
}

/* Per iteration, as TensorRT-LLM: step 0 layer 0 loads 30,1,0,3 and step
 * 1 loads 70,1,3,1 on 2 GPUs (2 experts each): GPU loads 31/3 and 71/4;
 * ratios 31/17 - 1 and 71/37.5 - 1, averaged. */
static void test_series_average(void **state) {
  (void)state;
  eplb_series_t s;
  eplb_placement_t p;
  eplb_report_t r;
  static const double load[8] = {30, 1, 0, 3, 70, 1, 3, 1};
  assert_int_equal(eplb_series_init(&s, 2, 1, 4, NULL), 0);
  memcpy(s.load, load, sizeof(load));
  assert_int_equal(eplb_placement_init(&p, 1, 4, 4, 2, NULL), 0);
  assert_int_equal(eplb_placement_contiguous(&p, NULL), 0);
  assert_int_equal(eplb_report_compute_series(&r, &s, &p, NULL, NULL), 0);
  assert_int_equal(r.num_steps, 2);
  double want = (31.0 / 17 - 1 + 71.0 / 37.5 - 1) / 2;
  assert_true(fabs(r.before.ratio[0] - want) < 1e-12);
  assert_true(fabs(r.before.avg_ratio - want) < 1e-12);
  assert_true(fabs(r.before.mean[0] - 27.25) < 1e-12);
  assert_true(fabs(r.before.std[0] - (sqrt(2 * 14.0 * 14) + sqrt(2 * 33.5 * 33.5)) / 2) < 1e-12);
  /* gpu_load is the sum's: 102 and 7. */
  assert_true(r.before.gpu_load[0] == 102 && r.before.gpu_load[1] == 7);
  /* Not the summed load's ratio (102/54.5 - 1 = 0.8716 > 0.8584). */
  assert_true(fabs(r.before.ratio[0] - (102.0 / 54.5 - 1)) > 1e-3);
  eplb_report_cleanup(&r);
  eplb_placement_cleanup(&p);
  eplb_series_cleanup(&s);
}

/* $EPLB_TEST_TMPDIR/name (or /tmp). */
static void tmp_path(char *buf, size_t n, const char *name) {
  const char *d = getenv("EPLB_TEST_TMPDIR");
  snprintf(buf, n, "%s/report_%ld_%s", d && d[0] ? d : "/tmp", (long)getpid(),
           name);
}

/* Counts the occurrences of needle in text. */
static int count(const char *text, const char *needle) {
  int n = 0;
  for (const char *p = strstr(text, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

static void test_writers(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_placement_t b, a;
  eplb_report_t r;
  make_stats(&s);
  make_before(&b);
  make_after(&a);
  assert_int_equal(eplb_report_compute(&r, &s, &b, &a, NULL), 0);
  char jp[600], sp[600], *text = NULL;
  tmp_path(jp, sizeof(jp), "r.json");
  tmp_path(sp, sizeof(sp), "r.svg");
  assert_int_equal(eplb_report_write_json(&r, jp, NULL), 0);
  assert_int_equal(eplb__read_file(jp, &text, NULL, NULL), 0);
  cJSON *root = cJSON_Parse(text);
  assert_non_null(root);
  const cJSON *bt = cJSON_GetObjectItem(root, "before");
  const cJSON *avg = cJSON_GetObjectItem(cJSON_GetObjectItem(bt, "average"),
                                         "imbalance_ratio");
  assert_true(fabs(avg->valuedouble - 0.3) < 1e-9);
  assert_int_equal(cJSON_GetObjectItem(bt, "worst_layer")->valueint, 3);
  assert_true(cJSON_IsObject(cJSON_GetObjectItem(root, "after")));
  cJSON_Delete(root);
  free(text);
  assert_int_equal(eplb_report_write_svg(&r, sp, NULL), 0);
  assert_int_equal(eplb__read_file(sp, &text, NULL, NULL), 0);
  assert_int_equal(count(text, "class=\"cell\""), 2 * 2 * 2); /* L x G x 2 */
  assert_int_equal(count(text, "class=\"bar "), 2 + 2);
  assert_int_equal(count(text, "<svg "), 1);
  assert_int_equal(count(text, "</svg>"), 1);
  assert_int_equal(count(text, "<rect"), count(text, "/>") + count(text, "</rect>"));
  assert_int_equal(count(text, "<g>"), count(text, "</g>"));
  free(text);
  unlink(jp);
  unlink(sp);
  eplb_report_cleanup(&r);
  eplb_placement_cleanup(&a);
  eplb_placement_cleanup(&b);
  eplb_stats_cleanup(&s);
}

/* ---- scenarios ------------------------------------------------------- */

/* Scenario 1 of 2 layers x 4 experts: even in layer 0, experts 2 and 3 in
 * layer 1 (layer ids as make_stats's). */
static void make_stats2(eplb_stats_t *s) {
  static const double load[8] = {1, 1, 1, 1, 0, 0, 5, 5};
  assert_int_equal(eplb_stats_init(s, 2, 4, NULL), 0);
  memcpy(s->load, load, sizeof(load));
  s->layer_ids[0] = 3;
  s->layer_ids[1] = 4;
}

static void test_scenarios_mean(void **state) {
  (void)state;
  eplb_stats_t st[2], m;
  make_stats(&st[0]);
  make_stats2(&st[1]);
  double w[2] = {1, 3};
  eplb_scenarios_t sc = {2, st, w};
  assert_int_equal(eplb_report_scenarios_mean(&sc, &m, NULL), 0);
  /* Layer 0: (1 x [.6 .2 .1 .1] + 3 x [.25 .25 .25 .25]) / 4; layer 1:
   * scenario 0 is idle there, so scenario 1's alone. */
  const double want[8] = {0.3375, 0.2375, 0.2125, 0.2125, 0, 0, 0.5, 0.5};
  for (int i = 0; i < 8; i++)
    assert_true(fabs(m.load[i] - want[i]) < 1e-12);
  assert_int_equal(m.layer_ids[1], 4);
  eplb_stats_cleanup(&m);
  w[0] = 0; /* out of range */
  eplb_error_t err;
  assert_int_equal(eplb_report_scenarios_mean(&sc, &m, &err), EPLB_EARG);
  assert_non_null(strstr(err.msg, "weight"));
  eplb_stats_cleanup(&st[0]);
  eplb_stats_cleanup(&st[1]);
}

static void test_add_scenarios(void **state) {
  (void)state;
  eplb_stats_t s, st[2];
  eplb_placement_t b, a;
  eplb_report_t r;
  make_stats(&s);
  make_stats(&st[0]);
  make_stats2(&st[1]);
  make_before(&b);
  make_after(&a);
  assert_int_equal(eplb_report_compute(&r, &s, &b, &a, NULL), 0);
  double w[2] = {1, 3};
  eplb_scenarios_t sc = {2, st, w};
  const char *names[2] = {"prefill \"long\"", NULL};
  assert_int_equal(eplb_report_add_scenarios(&r, &sc, names, &b, &a, NULL), 0);
  const eplb_report_scenarios_t *x = r.scenarios;
  assert_non_null(x);
  assert_int_equal(x->num_scenarios, 2);
  assert_string_equal(x->scenario[1].name, "scenario 1");
  /* Scenario 0 is the report's load: its tables are the report's. */
  assert_true(x->scenario[0].before.avg_ratio == r.before.avg_ratio);
  assert_true(x->scenario[0].after.avg_ratio == r.after.avg_ratio);
  /* Scenario 1 before: layer 0 even (0), layer 1 all on GPU 1 (1): 0.5. */
  assert_true(fabs(x->scenario[1].before.avg_ratio - 0.5) < 1e-12);
  assert_true(fabs(x->mean_before - (0.3 + 3 * 0.5) / 4) < 1e-12);
  /* After: GPU0 {0,2,3} GPU1 {0,1,2}; layer 1 of scenario 1: 7.5 vs 2.5. */
  assert_true(fabs(x->scenario[1].after.ratio[1] - 0.5) < 1e-12);
  /* The writers: the scenarios in the JSON (names escaped), one bar per
   * GPU per scenario in the SVG. */
  char jp[600], sp[600], *text = NULL;
  tmp_path(jp, sizeof(jp), "sc.json");
  tmp_path(sp, sizeof(sp), "sc.svg");
  assert_int_equal(eplb_report_write_json(&r, jp, NULL), 0);
  assert_int_equal(eplb__read_file(jp, &text, NULL, NULL), 0);
  cJSON *root = cJSON_Parse(text);
  assert_non_null(root);
  const cJSON *list = cJSON_GetObjectItem(root, "scenarios");
  assert_int_equal(cJSON_GetArraySize(list), 2);
  assert_string_equal(
      cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "name")->valuestring,
      "prefill \"long\"");
  assert_true(cJSON_IsNull(cJSON_GetObjectItem(root, "cross_validation")));
  cJSON_Delete(root);
  free(text);
  assert_int_equal(eplb_report_write_svg(&r, sp, NULL), 0);
  assert_int_equal(eplb__read_file(sp, &text, NULL, NULL), 0);
  assert_int_equal(count(text, "class=\"scell\""), 2 * 2 * 2); /* K L G */
  assert_int_equal(count(text, "<g>"), count(text, "</g>"));
  assert_non_null(strstr(text, ">prefill \"long\"</text>"));
  /* Scenario 1, layer 1 under the map: GPU 0 at 1.5 x the mean. */
  assert_non_null(strstr(text, "layer 4 GPU 0: 1.5000 x the mean"));
  free(text);
  unlink(jp);
  unlink(sp);
  /* A scenario of another shape: refused, the report unchanged. */
  eplb_report_cleanup(&r);
  assert_int_equal(eplb_report_compute(&r, &s, &b, &a, NULL), 0);
  eplb_stats_cleanup(&st[1]);
  assert_int_equal(eplb_stats_init(&st[1], 2, 3, NULL), 0);
  eplb_error_t err;
  assert_int_equal(eplb_report_add_scenarios(&r, &sc, names, &b, &a, &err),
                   EPLB_ESHAPE);
  assert_null(r.scenarios);
  eplb_report_cleanup(&r);
  eplb_placement_cleanup(&a);
  eplb_placement_cleanup(&b);
  eplb_stats_cleanup(&s);
  eplb_stats_cleanup(&st[0]);
  eplb_stats_cleanup(&st[1]);
}

/* Imbalance of the plan of (sc, policy) on st; mean: plan sc's mean. */
static double judged(const eplb_scenarios_t *sc, int mean, eplb_policy_t policy,
                     const eplb_stats_t *st) {
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.num_slots = 40;
  o.num_gpus = 8;
  o.policy = policy;
  eplb_placement_t p;
  eplb_stats_t m;
  if (mean) {
    assert_int_equal(eplb_report_scenarios_mean(sc, &m, NULL), 0);
    assert_int_equal(eplb_plan(&m, &o, &p, NULL), 0);
    eplb_stats_cleanup(&m);
  } else {
    assert_int_equal(eplb_plan_scenarios(sc, &o, &p, NULL), 0);
  }
  eplb_balance_t b;
  assert_int_equal(eplb_balance(st, &p, &b, NULL), 0);
  eplb_placement_cleanup(&p);
  return b.imbalance;
}

static void test_cross_validate(void **state) {
  (void)state;
  enum { K = 4, LL = 3, EE = 32 };
  eplb_stats_t st[K];
  double w[K] = {1, 2, 0.5, 1};
  for (int k = 0; k < K; k++) {
    assert_int_equal(eplb_stats_init(&st[k], LL, EE, NULL), 0);
    for (int i = 0; i < LL * EE; i++)
      st[k].load[i] =
          10 + (i * 7 + k * 13) % 29 + ((i + 5 * k) % 11 == 0 ? 300 : 0);
  }
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.num_slots = 40;
  o.num_gpus = 8;
  o.policy = EPLB_POLICY_DEEPSEEK; /* not used: every plan is made */
  eplb_report_cv_t cv = {0};
  eplb_error_t err;
  eplb_scenarios_t one = {1, st, w};
  assert_int_equal(eplb_report_cross_validate(&one, &o, &cv, &err), EPLB_EARG);
  assert_non_null(strstr(err.msg, "two scenarios"));
  eplb_scenarios_t sc = {K, st, w};
  assert_int_equal(eplb_report_cross_validate(&sc, &o, &cv, &err), 0);
  assert_int_equal(cv.num_scenarios, K);
  assert_int_equal(cv.num_gpus, 8);
  double mr = 0, wsum = 0;
  for (int k = 0; k < K; k++) {
    /* The others of k, in order, with their weights. */
    eplb_stats_t ot[K - 1];
    double ow[K - 1];
    for (int j = 0, n = 0; j < K; j++)
      if (j != k) {
        ot[n] = st[j];
        ow[n++] = w[j];
      }
    eplb_scenarios_t others = {K - 1, ot, ow};
    assert_true(cv.robust[k] ==
                judged(&others, 0, EPLB_POLICY_BALANCED, &st[k]));
    assert_true(cv.balanced[k] ==
                judged(&others, 1, EPLB_POLICY_BALANCED, &st[k]));
    assert_true(cv.deepseek[k] ==
                judged(&others, 1, EPLB_POLICY_DEEPSEEK, &st[k]));
    mr += w[k] * cv.robust[k];
    wsum += w[k];
  }
  assert_true(fabs(cv.mean_robust - mr / wsum) < 1e-12);
  /* Options that do not fit: the planner's message. */
  eplb_report_cv_cleanup(&cv);
  o.num_slots = 41;
  assert_int_equal(eplb_report_cross_validate(&sc, &o, &cv, &err), EPLB_EARG);
  assert_null(cv.robust);
  for (int k = 0; k < K; k++)
    eplb_stats_cleanup(&st[k]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scenarios_mean),
      cmocka_unit_test(test_add_scenarios),
      cmocka_unit_test(test_cross_validate),
      cmocka_unit_test(test_table_contiguous),
      cmocka_unit_test(test_replicas_split_load),
      cmocka_unit_test(test_compute_metrics),
      cmocka_unit_test(test_shape_errors),
      cmocka_unit_test(test_writers),
      cmocka_unit_test(test_series_average),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
