/* test_report.c - the computations of eplb-report (src/report/report.c) on
 * hand-computed cases: per-GPU loads with replicas splitting their expert's
 * load, mean / population std / max/mean per layer and the average row,
 * expert CV and hottest share, shape errors; and the writers: the JSON
 * parses and carries the numbers, the SVG has one cell per layer x GPU per
 * heat map and balanced tags. */
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_table_contiguous),
      cmocka_unit_test(test_replicas_split_load),
      cmocka_unit_test(test_compute_metrics),
      cmocka_unit_test(test_shape_errors),
      cmocka_unit_test(test_writers),
      cmocka_unit_test(test_series_average),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
