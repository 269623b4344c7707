/* test_hostile.c - the readers against what a careless or hostile user can
 * hand them: a FIFO or a device where a file belongs (refused by name, never
 * waited on), an output that is an input (refused by identity), MindIE
 * CSVs that disagree (columns per NPU, NUL bytes, names eplb would skip),
 * duplicate JSON keys, counts with more digits than a 64-bit integer, sums
 * that pass 2^53 by one, JSON nested a thousand deep, a malformed file too
 * large for the full reader's tree, and a dump whose iteration ids span a
 * series of gigabytes in a few kilobytes.
 *
 * Every case is a file made here, byte by byte, in $EPLB_TEST_TMPDIR.  An
 * alarm ends the run if a reader ever blocks (a FIFO read that waits would
 * otherwise hang the suite until CTest's timeout). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <hdf5.h>

#include "eplb/eplb.h"
#include "eplb/series.h"
#include "eplb/shard.h"
#include "formats/formats.h"
#include "util/fileio.h"

/* ---- helpers ---------------------------------------------------------- */

/* A fresh directory $EPLB_TEST_TMPDIR/hostile_<pid>_<name> (path in buf). */
static const char *fresh_dir(const char *name, char *buf, size_t n) {
  const char *d = getenv("EPLB_TEST_TMPDIR");
  snprintf(buf, n, "%s/hostile_%ld_%s", d && d[0] ? d : "/tmp", (long)getpid(),
           name);
  mkdir(buf, 0755);
  return buf;
}

/* dir/name into a static buffer. */
static const char *in(const char *dir, const char *name) {
  static char path[2][1024];
  static int k;
  k ^= 1;
  snprintf(path[k], sizeof(path[k]), "%s/%s", dir, name);
  return path[k];
}

static void put(const char *path, const void *data, size_t len) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static void put_text(const char *path, const char *text) {
  put(path, text, strlen(text));
}

/* rc must be `code` and the message must hold every needle (NULL ends). */
static void expect(int rc, int code, const eplb_error_t *err, ...) {
  if (rc != code)
    fail_msg("rc %d (%s), want %d; message: %s", rc, eplb_err_name(rc), code,
             err->msg);
  assert_null(strchr(err->msg, '\n'));
  va_list ap;
  va_start(ap, err);
  for (const char *n = va_arg(ap, const char *); n != NULL;
       n = va_arg(ap, const char *))
    if (strstr(err->msg, n) == NULL)
      fail_msg("message lacks '%s': %s", n, err->msg);
  va_end(ap);
}

/* Reads statistics at path (any format) expecting code and needles. */
#define EXPECT_STATS(path, code, ...)                                          \
  do {                                                                         \
    eplb_stats_t s_;                                                           \
    eplb_error_t e_;                                                           \
    eplb_error_clear(&e_);                                                     \
    int r_ = eplb_stats_read(&s_, (path), EPLB_STATS_AUTO, &e_);               \
    expect(r_, (code), &e_, __VA_ARGS__, NULL);                                \
    assert_null(s_.load);                                                      \
  } while (0)

#define EXPECT_MAP(path, code, ...)                                            \
  do {                                                                         \
    eplb_placement_t p_;                                                       \
    eplb_error_t e_;                                                           \
    eplb_error_clear(&e_);                                                     \
    int r_ = eplb_placement_read(&p_, (path), EPLB_MAP_AUTO, &e_);             \
    expect(r_, (code), &e_, __VA_ARGS__, NULL);                                \
    assert_null(p_.phy2log);                                                   \
  } while (0)

static const char *cfg2x4 = "{\"num_moe_layers\": 2, \"num_of_experts\": 4}";

/* ---- FIFOs, devices, directories where a file belongs ------------------ */

static void test_fifo_inputs(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("fifo", dir, sizeof(dir));
  const char *fifo = in(dir, "pipe.json");
  unlink(fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  EXPECT_STATS(fifo, EPLB_EIO, "pipe.json", "FIFO");
  EXPECT_MAP(fifo, EPLB_EIO, "pipe.json", "FIFO");
  eplb_series_t se;
  eplb_error_t err;
  expect(eplb_series_read(&se, fifo, &err), EPLB_EIO, &err, "FIFO", NULL);
  EXPECT_STATS("/dev/zero", EPLB_EIO, "/dev/zero", "character device");
  EXPECT_MAP(dir, EPLB_EIO, "is a directory");
  /* A shard (HDF5 opens the path itself: checked before). */
  eplb_shard_t *sh = NULL;
  expect(eplb_shard_open(fifo, &sh, &err), EPLB_EIO, &err, "FIFO", NULL);
  assert_null(sh);
  unlink(fifo);
}

static void test_fifo_in_dumps(void **state) {
  (void)state;
  char dir[600];
  /* A MindIE CSV that is a FIFO. */
  fresh_dir("fifo_mie", dir, sizeof(dir));
  put_text(in(dir, "model_gen_config.json"), cfg2x4);
  unlink(in(dir, "decode_0.csv"));
  assert_int_equal(mkfifo(in(dir, "decode_0.csv"), 0600), 0);
  EXPECT_STATS(dir, EPLB_EIO, "decode_0.csv", "FIFO");
  unlink(in(dir, "decode_0.csv"));
  /* The expert map a MindIE config names, a FIFO. */
  fresh_dir("fifo_miemap", dir, sizeof(dir));
  put_text(in(dir, "model_gen_config.json"),
           "{\"num_moe_layers\": 2, \"num_of_experts\": 4, "
           "\"eplb_expert_map_file\": \"map.json\"}");
  put_text(in(dir, "decode_0.csv"), "1,2\n3,4\n");
  unlink(in(dir, "map.json"));
  assert_int_equal(mkfifo(in(dir, "map.json"), 0600), 0);
  EXPECT_STATS(dir, EPLB_EIO, "map.json", "FIFO");
  unlink(in(dir, "map.json"));
  /* A TensorRT-LLM meta_info.json that is a FIFO. */
  fresh_dir("fifo_trt", dir, sizeof(dir));
  unlink(in(dir, "meta_info.json"));
  assert_int_equal(mkfifo(in(dir, "meta_info.json"), 0600), 0);
  EXPECT_STATS(dir, EPLB_EIO, "meta_info.json", "FIFO");
  unlink(in(dir, "meta_info.json"));
  /* A CSV that is a directory. */
  fresh_dir("dir_mie", dir, sizeof(dir));
  put_text(in(dir, "model_gen_config.json"), cfg2x4);
  mkdir(in(dir, "decode_0.csv"), 0755);
  EXPECT_STATS(dir, EPLB_EIO, "decode_0.csv", "is a directory");
}

/* ---- shard attributes that hold more than one value ------------------- */

/* A valid one-layer shard by the HDF5 C API, but with attribute `bad`
 * written as two values: "s" a fixed-length string array, "g" a uint64
 * array (the generation). */
static void write_array_attr_shard(const char *path, const char *bad) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  hsize_t two = 2, P = 2;
  hid_t sc = H5Screate(H5S_SCALAR), arr = H5Screate_simple(1, &two, NULL);
  hid_t st = H5Tcopy(H5T_C_S1);
  H5Tset_size(st, 11);
  hid_t a = H5Acreate2(f, "eplb_format", st, bad[0] == 's' ? arr : sc,
                       H5P_DEFAULT, H5P_DEFAULT);
  H5Awrite(a, st, "eplb-shard\0eplb-shard");
  H5Aclose(a);
  const char *keys[] = {"eplb_version", "generation", "rank", "world_size",
                        "num_layers"};
  int64_t vals[] = {1, 0, 0, 1, 1, 0};
  for (int i = 0; i < 5; i++) {
    int arr_here = bad[0] == 'g' && i == 1;
    a = H5Acreate2(f, keys[i], H5T_STD_I64LE, arr_here ? arr : sc, H5P_DEFAULT,
                   H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_INT64, arr_here ? &vals[4] : &vals[i]);
    H5Aclose(a);
  }
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t g = H5Gcreate2(f, "layers/0", lcpl, H5P_DEFAULT, H5P_DEFAULT);
  int32_t ids[2] = {1, 0};
  float w[2] = {1, 2};
  hid_t sp = H5Screate_simple(1, &P, NULL);
  hid_t d = H5Dcreate2(g, "expert_ids", H5T_STD_I32LE, sp, H5P_DEFAULT,
                       H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, ids);
  H5Dclose(d);
  d = H5Dcreate2(g, "w", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                 H5P_DEFAULT);
  H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w);
  H5Dclose(d);
  H5Sclose(sp);
  H5Gclose(g);
  H5Pclose(lcpl);
  H5Tclose(st);
  H5Sclose(arr);
  H5Sclose(sc);
  H5Fclose(f);
}

/* H5Aread writes every element of an attribute: a list where eplb reads one
 * value overran eplb's buffer (found by fuzz_shard).  Refused by name. */
static void test_shard_array_attributes(void **state) {
  (void)state;
  char dir[600];
  eplb_shard_t *sh = NULL;
  eplb_error_t err;
  /* h5py's f.attrs["eplb_format"] = ["eplb-shard", "x"] (an array of
   * variable-length strings), in tests/data. */
  expect(eplb_shard_open(EPLB_TEST_DATA "/shard_array_attr.h5", &sh, &err),
         EPLB_EPARSE, &err, "'eplb_format' is not a single string", NULL);
  assert_null(sh);
  fresh_dir("h5attr", dir, sizeof(dir));
  write_array_attr_shard(in(dir, "fixed.h5"), "s");
  expect(eplb_shard_open(in(dir, "fixed.h5"), &sh, &err), EPLB_EPARSE, &err,
         "'eplb_format' is not a single string", NULL);
  write_array_attr_shard(in(dir, "gen.h5"), "g");
  expect(eplb_shard_open(in(dir, "gen.h5"), &sh, &err), EPLB_EPARSE, &err,
         "'generation'", NULL);
  /* The same file with single values opens. */
  write_array_attr_shard(in(dir, "ok.h5"), "-");
  assert_int_equal(eplb_shard_open(in(dir, "ok.h5"), &sh, &err), 0);
  eplb_shard_close(sh);
}

/* ---- an output that is an input ------------------------------------- */

static void test_check_output(void **state) {
  (void)state;
  char dir[600], abs_a[700], rel_a[700], sym[700], hard[700], pat[700],
      dump[700];
  eplb_error_t err;
  fresh_dir("clash", dir, sizeof(dir));
  snprintf(abs_a, sizeof(abs_a), "%s/a.json", dir);
  put_text(abs_a, "{}");
  put_text(in(dir, "b.json"), "{}");
  snprintf(rel_a, sizeof(rel_a), "%s/./sub/../a.json", dir);
  mkdir(in(dir, "sub"), 0755);
  snprintf(sym, sizeof(sym), "%s/link.json", dir);
  unlink(sym);
  assert_int_equal(symlink("a.json", sym), 0);
  snprintf(hard, sizeof(hard), "%s/hard.json", dir);
  unlink(hard);
  assert_int_equal(link(abs_a, hard), 0);
  const char *one[1] = {abs_a};
  /* The same file under another name, through a link, a hard link. */
  expect(eplb__check_output("--output", rel_a, "--stats", one, 1, &err),
         EPLB_EARG, &err, "--output", "a.json", "--stats", "same file", NULL);
  expect(eplb__check_output("--output", sym, "--stats", one, 1, &err),
         EPLB_EARG, &err, "link.json", NULL);
  expect(eplb__check_output("--output", hard, "--stats", one, 1, &err),
         EPLB_EARG, &err, "hard.json", NULL);
  /* Through a glob, naming the match. */
  snprintf(pat, sizeof(pat), "%s/[ab].json", dir);
  const char *globbed[2] = {in(dir, "b.json"), pat};
  expect(eplb__check_output("--summary", rel_a, "--stats", globbed, 2, &err),
         EPLB_EARG, &err, "--summary", "[ab].json", NULL);
  /* A file inside a dump directory (and one level down). */
  snprintf(dump, sizeof(dump), "%s/sub", dir);
  put_text(in(dump, "decode_0.csv"), "1\n");
  const char *dumps[1] = {dir};
  expect(eplb__check_output("--json", in(dump, "decode_0.csv"), "--stats",
                            dumps, 1, &err),
         EPLB_EARG, &err, "decode_0.csv", NULL);
  /* Not a clash: another file, a file that does not exist yet. */
  assert_int_equal(eplb__check_output("--output", in(dir, "b.json"), "--stats",
                                      one, 1, &err),
                   0);
  assert_int_equal(eplb__check_output("--output", in(dir, "new.json"),
                                      "--stats", one, 1, &err),
                   0);
  /* An output that is a FIFO or a device: the rename would replace it. */
  const char *fifo = in(dir, "out.fifo");
  unlink(fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  expect(eplb__check_output("--output", fifo, "--stats", one, 1, &err),
         EPLB_EARG, &err, "out.fifo", "FIFO", NULL);
  unlink(fifo);
  /* Two outputs, existing or not. */
  assert_true(eplb__same_path(rel_a, abs_a));
  assert_true(eplb__same_path(in(dir, "x.json"), in(dump, "../x.json")));
  assert_false(eplb__same_path(in(dir, "x.json"), in(dump, "x.json")));
  assert_false(eplb__same_path(abs_a, in(dir, "b.json")));
}

/* The atomic writer refuses to rename over a device or a FIFO. */
static int write_nothing(FILE *f, const void *ctx, eplb_error_t *err) {
  (void)f;
  (void)ctx;
  (void)err;
  return 0;
}

static void test_write_over_fifo(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("wfifo", dir, sizeof(dir));
  const char *fifo = in(dir, "out.json");
  unlink(fifo);
  assert_int_equal(mkfifo(fifo, 0600), 0);
  eplb_error_t err;
  expect(eplb__write_atomic(fifo, write_nothing, NULL, &err), EPLB_EIO, &err,
         "FIFO", NULL);
  struct stat st;
  assert_int_equal(stat(fifo, &st), 0);
  assert_true(S_ISFIFO(st.st_mode));
  unlink(fifo);
}

/* ---- MindIE: CSVs that disagree ------------------------------------- */

static void test_mindie_columns_differ(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("mie_cols", dir, sizeof(dir));
  put_text(in(dir, "model_gen_config.json"),
           "{\"num_moe_layers\": 1, \"num_of_experts\": 4}");
  put_text(in(dir, "decode_0.csv"), "10,20\n");
  put_text(in(dir, "decode_1.csv"), "30\n");
  EXPECT_STATS(dir, EPLB_ESHAPE, "decode_0.csv", "decode_1.csv", "columns");
  eplb_series_t se;
  eplb_error_t err;
  expect(eplb_series_read(&se, dir, &err), EPLB_ESHAPE, &err, "decode_0.csv",
         "decode_1.csv", NULL);
}

static void test_mindie_names(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("mie_names", dir, sizeof(dir));
  put_text(in(dir, "model_gen_config.json"), cfg2x4);
  put_text(in(dir, "decode_0.csv"), "1,2\n3,4\n");
  put_text(in(dir, "decode_01.csv"), "1,2\n3,4\n");
  EXPECT_STATS(dir, EPLB_EPARSE, "decode_01.csv");
  unlink(in(dir, "decode_01.csv"));
  put_text(in(dir, "decode_99999999999.csv"), "1,2\n3,4\n");
  EXPECT_STATS(dir, EPLB_EPARSE, "decode_99999999999.csv");
  unlink(in(dir, "decode_99999999999.csv"));
  /* Other files are not MindIE's and stay ignored. */
  put_text(in(dir, "notes.txt"), "x");
  put_text(in(dir, "summary.csv"), "x");
  eplb_stats_t s;
  eplb_error_t err;
  assert_int_equal(eplb_stats_read(&s, dir, EPLB_STATS_AUTO, &err), 0);
  eplb_stats_cleanup(&s);
}

/* A NUL byte would end a YAML map early: refused, not read as less. */
static void test_yaml_nul(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("yaml_nul", dir, sizeof(dir));
  const char y[] = "initial_global_assignments:\n  3: [0, 1]\n\0  4: [1, 0]\n"
                   "num_slots: 2\n";
  put(in(dir, "map.yaml"), y, sizeof(y) - 1);
  EXPECT_MAP(in(dir, "map.yaml"), EPLB_EPARSE, "map.yaml", "NUL byte");
}

static void test_mindie_nul(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("mie_nul", dir, sizeof(dir));
  put_text(in(dir, "model_gen_config.json"), cfg2x4);
  put(in(dir, "decode_0.csv"), "1,2\n3\0,4\n", 8);
  EXPECT_STATS(dir, EPLB_EPARSE, "decode_0.csv", "line 2", "NUL byte");
}

/* Two NPUs' files adding to 2^53 + 1 in one expert. */
static void test_mindie_sum_past_2p53(void **state) {
  (void)state;
  char dir[600], sub[700];
  fresh_dir("mie_2p53", dir, sizeof(dir));
  put_text(in(dir, "model_gen_config.json"),
           "{\"num_moe_layers\": 1, \"num_of_experts\": 1}");
  put_text(in(dir, "decode_0.csv"), "9007199254740991\n");
  snprintf(sub, sizeof(sub), "%s/prefill", dir);
  mkdir(sub, 0755);
  put_text(in(sub, "prefill_0.csv"), "2\n");
  EXPECT_STATS(dir, EPLB_ECOUNT, "2^53");
  put_text(in(sub, "prefill_0.csv"), "1\n"); /* exactly 2^53: fine */
  eplb_stats_t s;
  eplb_error_t err;
  assert_int_equal(eplb_stats_read(&s, dir, EPLB_STATS_AUTO, &err), 0);
  assert_true(s.load[0] == EPLB_MAX_COUNT);
  eplb_stats_cleanup(&s);
}

/* ---- counts and sums --------------------------------------------------- */

static void test_long_integers(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("digits", dir, sizeof(dir));
  /* 25 digits: more than an int64_t holds (the scanner must not wrap). */
  put_text(in(dir, "ms.json"), "{\"0\": {\"0\": 1234567890123456789012345}}");
  EXPECT_STATS(in(dir, "ms.json"), EPLB_ECOUNT, "2^53");
  put_text(in(dir, "sg.json"),
           "{\"logical_count\": [[99999999999999999999999999, 1]]}");
  EXPECT_STATS(in(dir, "sg.json"), EPLB_ECOUNT, "2^53");
  const char *t = "{\"0\": {\"0\": 1234567890123456789012345}}";
  eplb_stats_t s;
  assert_int_equal(eplb__mindspeed_fast(&s, t, strlen(t)), 0);
}

/* SGLang steps that sum to 2^53 + 1: the fast and the full reader. */
static void test_sglang_sum_past_2p53(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("sg2p53", dir, sizeof(dir));
  const char *steps = "[[[9007199254740991, 0]], [[2, 0]]]";
  char text[256];
  snprintf(text, sizeof(text), "{\"logical_count\": %s}", steps);
  eplb_stats_t s;
  assert_int_equal(eplb__sglang_fast(&s, text, strlen(text)), 0);
  put_text(in(dir, "fast.json"), text);
  EXPECT_STATS(in(dir, "fast.json"), EPLB_ECOUNT, "2^53");
  /* A key holding an object sends the file through cJSON. */
  snprintf(text, sizeof(text), "{\"x\": {}, \"logical_count\": %s}", steps);
  put_text(in(dir, "full.json"), text);
  EXPECT_STATS(in(dir, "full.json"), EPLB_ECOUNT, "2^53");
  /* Exactly 2^53 is the limit, accepted. */
  const char *ok = "{\"logical_count\": [[[9007199254740991]], [[1]]]}";
  eplb_error_t err;
  put_text(in(dir, "ok.json"), ok);
  assert_int_equal(eplb_stats_read(&s, in(dir, "ok.json"), 0, &err), 0);
  assert_true(s.load[0] == EPLB_MAX_COUNT);
  eplb_stats_cleanup(&s);
}

/* An HDF5-free series summed over steps passes 2^53 by one. */
static void test_series_sum_past_2p53(void **state) {
  (void)state;
  eplb_series_t se;
  eplb_stats_t st;
  eplb_error_t err;
  assert_int_equal(eplb_series_init(&se, 2, 1, 1, &err), 0);
  se.load[0] = 9007199254740991.0;
  se.load[1] = 2.0;
  expect(eplb_series_sum(&se, 0.0, &st, &err), EPLB_ECOUNT, &err, "2^53",
         NULL);
  assert_null(st.load);
  eplb_series_cleanup(&se);
}

/* ---- duplicate keys ------------------------------------------------------ */

static const char *layer_dev(const char *extra) {
  static char buf[512];
  snprintf(buf, sizeof(buf),
           "{\"moe_layer_count\": 1, \"layer_list\": [{\"layer_id\": 0, "
           "\"device_count\": 1, %s\"device_list\": [{\"device_id\": 0, "
           "\"device_expert\": [0, 1]}]}]}",
           extra);
  return buf;
}

static void test_duplicate_keys(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("dups", dir, sizeof(dir));
  /* SGLang: the first logical_count would be read, the second dropped. */
  put_text(in(dir, "sg.json"),
           "{\"logical_count\": [[1, 2]], \"logical_count\": [[5, 5]]}");
  EXPECT_STATS(in(dir, "sg.json"), EPLB_EPARSE, "sg.json", "\"logical_count\"",
               "twice");
  eplb_series_t se;
  eplb_error_t err;
  expect(eplb_series_read(&se, in(dir, "sg.json"), &err), EPLB_EPARSE, &err,
         "\"logical_count\"", "twice", NULL);
  /* Any other key of an SGLang file, too. */
  put_text(in(dir, "sg2.json"),
           "{\"a\": 1, \"logical_count\": [[1, 2]], \"a\": 2}");
  EXPECT_STATS(in(dir, "sg2.json"), EPLB_EPARSE, "\"a\"", "twice");
  /* MindSpeed-RL layer and expert keys. */
  put_text(in(dir, "ms.json"), "{\"0\": {\"0\": 1, \"1\": 2}, \"0\": {\"0\": 3, "
                               "\"1\": 4}}");
  EXPECT_STATS(in(dir, "ms.json"), EPLB_EPARSE, "layer \"0\"", "twice");
  put_text(in(dir, "ms2.json"), "{\"0\": {\"0\": 1, \"0\": 2}}");
  EXPECT_STATS(in(dir, "ms2.json"), EPLB_EPARSE, "expert \"0\"", "twice");
  /* Expert maps: device_count, moe_layer_count, a device's device_id. */
  put_text(in(dir, "m1.json"), layer_dev("\"device_count\": 2, "));
  EXPECT_MAP(in(dir, "m1.json"), EPLB_EPARSE, "\"device_count\"", "twice",
             "layer_list[0]");
  put_text(in(dir, "m2.json"),
           "{\"moe_layer_count\": 1, \"moe_layer_count\": 2, \"layer_list\": "
           "[]}");
  EXPECT_MAP(in(dir, "m2.json"), EPLB_EPARSE, "\"moe_layer_count\"", "twice");
  put_text(in(dir, "m3.json"), layer_dev("\"comment\": 1, \"comment\": 2, "));
  EXPECT_MAP(in(dir, "m3.json"), EPLB_EPARSE, "\"comment\"", "twice");
  /* SGLang and DeepSeek maps. */
  put_text(in(dir, "p1.json"), "{\"physical_to_logical_map\": [[0, 1]], "
                               "\"physical_to_logical_map\": [[1, 0]]}");
  EXPECT_MAP(in(dir, "p1.json"), EPLB_EPARSE, "\"physical_to_logical_map\"",
             "twice");
  put_text(in(dir, "p2.json"), "{\"phy2log\": [[0, 1]], \"logcnt\": [[1, 1]], "
                               "\"logcnt\": [[2, 0]]}");
  EXPECT_MAP(in(dir, "p2.json"), EPLB_EPARSE, "\"logcnt\"", "twice");
  /* A MindIE config. */
  fresh_dir("dups_mie", dir, sizeof(dir));
  put_text(in(dir, "model_gen_config.json"),
           "{\"num_moe_layers\": 2, \"num_of_experts\": 4, "
           "\"num_moe_layers\": 1}");
  put_text(in(dir, "decode_0.csv"), "1,2\n3,4\n");
  EXPECT_STATS(dir, EPLB_EPARSE, "model_gen_config.json",
               "\"num_moe_layers\"", "twice");
}

/* ---- JSON nested too deeply, and too many values for the full reader ---- */

static void test_deep_nesting(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("deep", dir, sizeof(dir));
  size_t n = 1500;
  char *t = malloc(2 * n + 64);
  assert_non_null(t);
  size_t k = (size_t)sprintf(t, "{\"logical_count\": ");
  memset(t + k, '[', n);
  memset(t + k + n, ']', n);
  strcpy(t + k + 2 * n, "}");
  put_text(in(dir, "deep.json"), t);
  EXPECT_STATS(in(dir, "deep.json"), EPLB_EPARSE, "deep.json", "nested",
               "1000");
  put_text(in(dir, "deepmap.json"), t + k);
  EXPECT_MAP(in(dir, "deepmap.json"), EPLB_EPARSE, "nested");
  free(t);
}

/* A malformed file of 5 million values ([50][100][1000], one of them
 * negative): refused before cJSON builds a tree of them (about 80 bytes
 * each), naming where the fast reader stopped. */
static void test_too_many_values(void **state) {
  (void)state;
  char dir[600], where[64];
  fresh_dir("big", dir, sizeof(dir));
  size_t n = 5000000, bad = 0;
  char *t = malloc(2 * n + 4 * 5100 + 64);
  assert_non_null(t);
  size_t k = (size_t)sprintf(t, "{\"logical_count\": [");
  for (int step = 0; step < 50; step++) {
    t[k++] = '[';
    for (int l = 0; l < 100; l++) {
      t[k++] = '[';
      for (int e = 0; e < 1000; e++) {
        if (step == 25 && l == 50 && e == 500)
          t[bad = k++] = '-';
        t[k++] = '1';
        t[k++] = ',';
      }
      t[k - 1] = ']';
      t[k++] = ',';
    }
    t[k - 1] = ']';
    t[k++] = ',';
  }
  k += (size_t)sprintf(t + k - 1, "]}") - 1;
  put(in(dir, "big.json"), t, k);
  free(t);
  snprintf(where, sizeof(where), "line 1, column %zu", bad + 1);
  struct rusage r0, r1;
  getrusage(RUSAGE_SELF, &r0);
  EXPECT_STATS(in(dir, "big.json"), EPLB_EPARSE, "big.json", "values", where);
  getrusage(RUSAGE_SELF, &r1);
  /* The text (10 MB) and the scanner's values; not a tree of 400 MB. */
  if (r1.ru_maxrss - r0.ru_maxrss > 150 * 1024)
    fail_msg("reading took %ld kB more memory", r1.ru_maxrss - r0.ru_maxrss);
}

/* ---- messages ------------------------------------------------------------ */

/* A rank file of a TensorRT-LLM dump: tensors keys[0..k) of E I64 counts,
 * the first count 1, the others 0. */
static void put_tensor_file(const char *path, const char *keys[], int k,
                            int E) {
  char head[512];
  size_t hl = 0, data = (size_t)8 * (size_t)E * (size_t)k;
  hl += (size_t)snprintf(head, sizeof(head), "{");
  for (int i = 0; i < k; i++)
    hl += (size_t)snprintf(head + hl, sizeof(head) - hl,
                           "%s\"%s\": {\"dtype\": \"I64\", \"shape\": [%d], "
                           "\"data_offsets\": [%d, %d]}",
                           i ? ", " : "", keys[i], E, 8 * E * i,
                           8 * E * (i + 1));
  hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "}");
  unsigned char *buf = calloc(8 + hl + data, 1);
  assert_non_null(buf);
  uint64_t n = hl;
  for (int b = 0; b < 8; b++)
    buf[b] = (unsigned char)(n >> (8 * b));
  memcpy(buf + 8, head, hl);
  buf[8 + hl] = 1;
  put(path, buf, 8 + hl + data);
  free(buf);
}

/* A TensorRT-LLM dump whose iterations span more steps than a series
 * holds: the message names the directory. */
static void test_series_too_large_names_dir(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("trt_long", dir, sizeof(dir));
  put_text(in(dir, "meta_info.json"),
           "{\"num_experts\": 1, \"num_experts_per_token\": 1}");
  const char *keys[2] = {"0_3", "2000000_3"};
  put_tensor_file(in(dir, "rank0.safetensors"), keys, 2, 1);
  eplb_series_t se;
  eplb_error_t err;
  expect(eplb_series_read(&se, dir, &err), EPLB_EARG, &err, dir, "steps",
         NULL);
}

/* This process's address space in bytes (VmSize), 0 if unknown. */
static unsigned long long vm_size(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  unsigned long long kb = 0;
  while (f != NULL && fgets(line, sizeof(line), f) != NULL)
    if (sscanf(line, "VmSize: %llu kB", &kb) == 1)
      break;
  if (f != NULL)
    fclose(f);
  return kb * 1024;
}

/* A TensorRT-LLM dump of iterations 0 and 999999 alone, 512 experts: read
 * as a series, iteration 1 is named missing without the 10^6 x 1 x 512
 * series (4 GB) being allocated first: in a child with 1 GB of address
 * space to spare (the allocation fails there, or aborts under ASan). */
static void test_series_gap_bounded(void **state) {
  (void)state;
  char dir[600];
  fresh_dir("trt_sparse", dir, sizeof(dir));
  put_text(in(dir, "meta_info.json"), "{\"num_experts\": 512}");
  const char *keys[2] = {"0_3", "999999_3"};
  put_tensor_file(in(dir, "rank0.safetensors"), keys, 2, 512);
  unsigned long long vm = vm_size();
  assert_true(vm > 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct rlimit rl;
    getrlimit(RLIMIT_AS, &rl);
    rl.rlim_cur = (rlim_t)(vm + (1ULL << 30));
    if (setrlimit(RLIMIT_AS, &rl) != 0)
      _exit(2);
    eplb_series_t se;
    eplb_error_t err;
    int rc = eplb_series_read(&se, dir, &err);
    int ok = rc == EPLB_ESHAPE && strstr(err.msg, "no rank has key \"1_3\"");
    if (!ok)
      fprintf(stderr, "rc %d: %s\n", rc, err.msg);
    _exit(ok ? 0 : 1);
  }
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void) {
  /* A reader that blocks ends the run instead of hanging the suite. */
  alarm(60);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fifo_inputs),
      cmocka_unit_test(test_fifo_in_dumps),
      cmocka_unit_test(test_shard_array_attributes),
      cmocka_unit_test(test_check_output),
      cmocka_unit_test(test_write_over_fifo),
      cmocka_unit_test(test_mindie_columns_differ),
      cmocka_unit_test(test_mindie_names),
      cmocka_unit_test(test_mindie_nul),
      cmocka_unit_test(test_yaml_nul),
      cmocka_unit_test(test_mindie_sum_past_2p53),
      cmocka_unit_test(test_long_integers),
      cmocka_unit_test(test_sglang_sum_past_2p53),
      cmocka_unit_test(test_series_sum_past_2p53),
      cmocka_unit_test(test_duplicate_keys),
      cmocka_unit_test(test_deep_nesting),
      cmocka_unit_test(test_too_many_values),
      cmocka_unit_test(test_series_too_large_names_dir),
      cmocka_unit_test(test_series_gap_bounded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
