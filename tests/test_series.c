/* test_series.c - per-step series: readers (SGLang JSON, HDF5), EMA sums,
 * and the backtest that chooses the EMA rate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"
#include "eplb/series.h"

#include <unistd.h>

static char tmpdir[512];

static const char *path_of(const char *name) {
  static char buf[1024];
  snprintf(buf, sizeof(buf), "%s/%s", tmpdir, name);
  return buf;
}

static void write_text(const char *name, const char *text) {
  FILE *f = fopen(path_of(name), "w");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static void test_json_steps(void **state) {
  (void)state;
  write_text("s.json", "{\"logical_count\": [[[1, 2], [3, 4]], [[5, 6], [7, 8]], "
                       "[[0, 0], [1, 1]]]}");
  eplb_series_t s;
  eplb_error_t err;
  assert_int_equal(eplb_series_read(&s, path_of("s.json"), &err), 0);
  assert_int_equal(s.num_steps, 3);
  assert_int_equal(s.num_layers, 2);
  assert_int_equal(s.num_experts, 2);
  assert_true(s.load[(1 * 2 + 1) * 2 + 0] == 7);
  eplb_stats_t sum;
  assert_int_equal(eplb_series_sum(&s, 0, &sum, &err), 0);
  assert_true(sum.load[0] == 6 && sum.load[3] == 13);
  eplb_stats_cleanup(&sum);
  /* alpha 0.5: weights 1/4, 1/2, 1 rescaled to add up to 3. */
  assert_int_equal(eplb_series_sum(&s, 0.5, &sum, &err), 0);
  double k = 3.0 / 1.75;
  assert_true(fabs(sum.load[0] - k * (0.25 * 1 + 0.5 * 5 + 1 * 0)) < 1e-9);
  eplb_stats_cleanup(&sum);
  assert_int_equal(eplb_series_sum(&s, 1.0, &sum, &err), EPLB_EARG);
  assert_non_null(strstr(err.msg, "--ema-alpha"));
  eplb_series_cleanup(&s);
  /* A plain [L][E] is one step. */
  write_text("one.json", "{\"logical_count\": [[1, 2, 3], [4, 5, 6]]}");
  assert_int_equal(eplb_series_read(&s, path_of("one.json"), &err), 0);
  assert_int_equal(s.num_steps, 1);
  assert_int_equal(s.num_experts, 3);
  eplb_series_cleanup(&s);
}

static void expect_bad(const char *name, const char *text, int code,
                       const char *needle) {
  write_text(name, text);
  eplb_series_t s;
  eplb_error_t err;
  eplb_error_clear(&err);
  assert_int_equal(eplb_series_read(&s, path_of(name), &err), code);
  if (strstr(err.msg, needle) == NULL || strstr(err.msg, name) == NULL)
    fail_msg("message '%s' lacks '%s' or the file name", err.msg, needle);
  assert_null(s.load);
}

static void test_json_bad(void **state) {
  (void)state;
  expect_bad("trunc.json", "{\"logical_count\": [[[1, 2]", EPLB_EPARSE, "not valid JSON");
  expect_bad("nokey.json", "{\"counts\": [[1]]}", EPLB_EPARSE, "logical_count");
  expect_bad("ragged.json", "{\"logical_count\": [[[1, 2]], [[1]]]}", EPLB_ESHAPE, "step 1");
  expect_bad("neg.json", "{\"logical_count\": [[[1, -2]]]}", EPLB_ECOUNT, "expert 1");
  expect_bad("str.json", "{\"logical_count\": [[[1, \"x\"]]]}", EPLB_EPARSE, "not a number");
  eplb_series_t s;
  eplb_error_t err;
  assert_int_equal(eplb_series_read(&s, path_of("missing.json"), &err), EPLB_EIO);
  assert_non_null(strstr(err.msg, "missing.json"));
}

static void write_h5(const char *name, const char *dset, int T, int L, int E,
                     hid_t type, int negative) {
  hid_t f = H5Fcreate(path_of(name), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  assert_true(f >= 0);
  hsize_t dims[3] = {(hsize_t)T, (hsize_t)L, (hsize_t)E};
  hid_t sp = H5Screate_simple(3, dims, NULL);
  hid_t d = H5Dcreate2(f, dset, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int *v = malloc(sizeof(int) * (size_t)(T * L * E));
  for (int i = 0; i < T * L * E; i++)
    v[i] = i;
  if (negative)
    v[T * L * E - 1] = -3;
  assert_true(H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
  free(v);
  H5Dclose(d);
  H5Sclose(sp);
  H5Fclose(f);
}

static void test_hdf5(void **state) {
  (void)state;
  write_h5("s.h5", "expert_load", 4, 3, 5, H5T_STD_U16LE, 0);
  eplb_series_t s;
  eplb_error_t err;
  assert_int_equal(eplb_series_read(&s, path_of("s.h5"), &err), 0);
  assert_int_equal(s.num_steps, 4);
  assert_int_equal(s.num_layers, 3);
  assert_int_equal(s.num_experts, 5);
  assert_true(s.load[59] == 59);
  eplb_series_cleanup(&s);
  write_h5("neg.h5", "logical_count", 2, 2, 2, H5T_STD_I32LE, 1);
  assert_int_equal(eplb_series_read(&s, path_of("neg.h5"), &err), EPLB_ECOUNT);
  assert_non_null(strstr(err.msg, "step 1, layer 1, expert 1"));
  /* A truncated HDF5 file is malformed, not a crash. */
  FILE *in = fopen(path_of("s.h5"), "rb");
  char buf[600];
  size_t n = fread(buf, 1, sizeof(buf), in);
  fclose(in);
  FILE *out = fopen(path_of("cut.h5"), "wb");
  fwrite(buf, 1, n, out);
  fclose(out);
  int rc = eplb_series_read(&s, path_of("cut.h5"), &err);
  assert_true(rc == EPLB_EPARSE || rc == EPLB_EHDF5);
  assert_non_null(strstr(err.msg, "cut.h5"));
}

/* eplb-plan is built without HDF5 and reads an HDF5 series through the
 * module it loads (src/formats/series_h5.h): its map must be the library's plan of
 * the same EMA sum, the module's errors must reach the user, and without
 * the module the error must say so. */
static void test_eplb_plan_hdf5_module(void **state) {
  (void)state;
  write_h5("plan.h5", "logical_count", 3, 2, 8, H5T_STD_U32LE, 0);
  write_h5("negplan.h5", "logical_count", 2, 2, 8, H5T_STD_I32LE, 1);
  /* path_of() returns one static buffer: copies for the commands. */
  char h5[1024], neg[1024], map[1024], out[1024], negmap[1024], negerr[1024];
  char alone[1024], alonebin[1024], alonemap[1024], aloneerr[1024];
  char cmd[8192];
  snprintf(h5, sizeof(h5), "%s", path_of("plan.h5"));
  snprintf(neg, sizeof(neg), "%s", path_of("negplan.h5"));
  snprintf(map, sizeof(map), "%s", path_of("plan_map.json"));
  snprintf(out, sizeof(out), "%s", path_of("plan.out"));
  snprintf(negmap, sizeof(negmap), "%s", path_of("neg_map.json"));
  snprintf(negerr, sizeof(negerr), "%s", path_of("neg.err"));
  snprintf(alone, sizeof(alone), "%s", path_of("alone/bin"));
  snprintf(alonebin, sizeof(alonebin), "%s", path_of("alone/bin/eplb-plan"));
  snprintf(alonemap, sizeof(alonemap), "%s", path_of("alone_map.json"));
  snprintf(aloneerr, sizeof(aloneerr), "%s", path_of("alone.err"));
  snprintf(cmd, sizeof(cmd),
           "'%s' --stats '%s' --num-slots 10 --num-gpus 2 --ema-alpha 0.5 "
           "--threads 1 --output '%s' > '%s' 2>&1",
           EPLB_PLAN_BIN, h5, map, out);
  assert_int_equal(system(cmd), 0);
  eplb_series_t s;
  eplb_stats_t st;
  eplb_placement_t want, got;
  eplb_error_t err;
  assert_int_equal(eplb_series_read(&s, h5, &err), 0);
  assert_int_equal(eplb_series_sum(&s, 0.5, &st, &err), 0);
  eplb_plan_opts_t o;
  eplb_plan_opts_default(&o);
  o.num_slots = 10;
  o.num_gpus = 2;
  assert_int_equal(eplb_plan(&st, &o, &want, &err), 0);
  assert_int_equal(eplb_placement_read(&got, map, EPLB_MAP_AUTO, &err), 0);
  assert_int_equal(got.num_layers, want.num_layers);
  assert_int_equal(got.num_slots, want.num_slots);
  assert_memory_equal(got.phy2log, want.phy2log,
                      sizeof(int32_t) * (size_t)(want.num_layers * want.num_slots));
  eplb_placement_cleanup(&got);
  eplb_placement_cleanup(&want);
  eplb_stats_cleanup(&st);

  /* Without --ema-alpha the series is statistics: the plain sum of its
   * steps, in the library (eplb_stats_read) and in eplb-plan. */
  eplb_stats_t sum, plain;
  assert_int_equal(eplb_stats_read(&sum, h5, EPLB_STATS_AUTO, &err), 0);
  assert_int_equal(eplb_series_sum(&s, 0.0, &plain, &err), 0);
  assert_int_equal(sum.num_layers, plain.num_layers);
  assert_memory_equal(sum.load, plain.load,
                      sizeof(double) * (size_t)(plain.num_layers * plain.num_experts));
  snprintf(cmd, sizeof(cmd),
           "'%s' --stats '%s' --num-slots 10 --num-gpus 2 --threads 1 "
           "--output '%s' > '%s' 2>&1",
           EPLB_PLAN_BIN, h5, map, out);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(eplb_plan(&plain, &o, &want, &err), 0);
  assert_int_equal(eplb_placement_read(&got, map, EPLB_MAP_AUTO, &err), 0);
  assert_memory_equal(got.phy2log, want.phy2log,
                      sizeof(int32_t) * (size_t)(want.num_layers * want.num_slots));
  eplb_placement_cleanup(&got);
  eplb_placement_cleanup(&want);
  eplb_stats_cleanup(&sum);
  eplb_stats_cleanup(&plain);
  eplb_series_cleanup(&s);

  /* A series with a negative count: the module reads it, the check names
   * the place, eplb-plan exits 1 and writes nothing. */
  snprintf(cmd, sizeof(cmd),
           "'%s' --stats '%s' --num-slots 10 --num-gpus 2 --ema-alpha 0.5 "
           "--output '%s' 2> '%s'",
           EPLB_PLAN_BIN, neg, negmap, negerr);
  int rc = system(cmd);
  assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
  char text[2048] = "";
  FILE *f = fopen(negerr, "r");
  assert_non_null(f);
  size_t n = fread(text, 1, sizeof(text) - 1, f);
  text[n] = '\0';
  fclose(f);
  assert_non_null(strstr(text, "negplan.h5"));
  assert_non_null(strstr(text, "step 1, layer 1, expert 7"));
  assert_int_equal(access(negmap, F_OK), -1);

  /* A copy of the program with no module beside it: one line that says
   * what is missing (or, where eplb is installed in its default place,
   * the installed module does the job). */
  snprintf(cmd, sizeof(cmd), "mkdir -p '%s' && cp '%s' '%s'",
           alone, EPLB_PLAN_BIN, alonebin);
  assert_int_equal(system(cmd), 0);
  snprintf(cmd, sizeof(cmd),
           "'%s' --stats '%s' --num-slots 10 --num-gpus 2 --ema-alpha 0.5 "
           "--output '%s' 2> '%s'",
           alonebin, h5, alonemap, aloneerr);
  rc = system(cmd);
  int installed = access(EPLB_MODULE_DIR "/eplb_h5series.so", R_OK) == 0;
  if (installed) {
    assert_int_equal(rc, 0);
  } else {
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
    f = fopen(aloneerr, "r");
    assert_non_null(f);
    n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    fclose(f);
    assert_non_null(strstr(text, "plan.h5 is an HDF5 file"));
    assert_non_null(strstr(text, "eplb_h5series.so"));
  }
}

/* Drifting traffic: the backtest prefers a positive EMA rate; stationary
 * traffic: it keeps the plain sum (or a small rate). */
static void test_choose_alpha(void **state) {
  (void)state;
  eplb_series_t s;
  assert_int_equal(eplb_series_init(&s, 40, 2, 8, NULL), 0);
  for (int t = 0; t < 40; t++)
    for (int l = 0; l < 2; l++)
      for (int e = 0; e < 8; e++) /* expert e's share rises with t when e < 4 */
        s.load[(t * 2 + l) * 8 + e] = e < 4 ? 100.0 + 30.0 * t : 1300.0 - 30.0 * t;
  double a;
  assert_int_equal(eplb_series_choose_alpha(&s, &a, NULL), 0);
  assert_true(a > 0.1);
  for (int i = 0; i < 40 * 16; i++)
    s.load[i] = 100 + (i * 7919) % 13; /* no trend, little noise */
  assert_int_equal(eplb_series_choose_alpha(&s, &a, NULL), 0);
  assert_true(a <= 0.05);
  eplb_series_cleanup(&s);
}

int main(void) {
  const char *base = getenv("EPLB_TEST_TMPDIR");
  snprintf(tmpdir, sizeof(tmpdir), "%s/series", base ? base : "/tmp");
  char cmd[600];
  snprintf(cmd, sizeof(cmd), "mkdir -p '%s'", tmpdir);
  if (system(cmd) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_steps),
      cmocka_unit_test(test_json_bad),
      cmocka_unit_test(test_hdf5),
      cmocka_unit_test(test_eplb_plan_hdf5_module),
      cmocka_unit_test(test_choose_alpha),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
