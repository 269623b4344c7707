/* test_formats.c - the statistics readers and the map readers/writers
 * (src/formats/): good files give the right numbers, bad files give the
 * right code and a message that names the file and the offending key,
 * index or line; both map formats survive a write -> read round trip; a
 * write is atomic.  Data: tests/data/ (hand-made) and small files written
 * to $EPLB_TEST_TMPDIR by the tests. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eplb/eplb.h"
#include "formats/formats.h"

#ifndef EPLB_TEST_DATA
#error "EPLB_TEST_DATA (tests/data) must be defined by the build"
#endif

/* ---- helpers ---------------------------------------------------------- */

static char tmpdir[512];

/* $EPLB_TEST_TMPDIR, or a fresh directory under /tmp. */
static const char *tmp_dir(void) {
  if (tmpdir[0] == '\0') {
    const char *d = getenv("EPLB_TEST_TMPDIR");
    if (d != NULL && d[0] != '\0') {
      snprintf(tmpdir, sizeof(tmpdir), "%s", d);
    } else {
      snprintf(tmpdir, sizeof(tmpdir), "/tmp/eplb_test_formats_XXXXXX");
      assert_non_null(mkdtemp(tmpdir));
    }
  }
  return tmpdir;
}

/* Path of a test-owned file in the temporary directory (static buffer). */
static const char *tmp_path(const char *name) {
  static char path[1024];
  snprintf(path, sizeof(path), "%s/formats_%d_%s", tmp_dir(), (int)getpid(),
           name);
  return path;
}

static const char *data_path(const char *name) {
  static char path[1024];
  snprintf(path, sizeof(path), "%s/%s", EPLB_TEST_DATA, name);
  return path;
}

/* Writes `len` bytes of `text` to tmp_path(name); returns the path. */
static const char *write_bytes(const char *name, const char *text, size_t len) {
  const char *path = tmp_path(name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(text, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
  return path;
}

static const char *write_text(const char *name, const char *text) {
  return write_bytes(name, text, strlen(text));
}

/* Reads a whole file into a malloc'd NUL-terminated buffer. */
static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  assert_non_null(f);
  char *buf = malloc(1 << 20);
  assert_non_null(buf);
  size_t n = fread(buf, 1, (1 << 20) - 1, f);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* Fails with the whole message when `needle` is not in the error. */
static void assert_msg_has(const eplb_error_t *err, const char *needle) {
  if (strstr(err->msg, needle) == NULL)
    fail_msg("error message \"%s\" lacks \"%s\"", err->msg, needle);
}

/* ---- statistics: good files ------------------------------------------- */

static void test_mindspeed_good(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_error_t err;
  /* Keys shuffled in the file: rows and columns follow the keys. */
  assert_int_equal(eplb_stats_read(&s, data_path("ms_part_a.json"),
                                   EPLB_STATS_AUTO, &err), 0);
  assert_int_equal(s.num_layers, 4);
  assert_int_equal(s.num_experts, 8);
  assert_int_equal(s.dense_rows, 0);
  for (int32_t l = 0; l < 4; l++)
    assert_int_equal(s.layer_ids[l], l);
  assert_true(s.load[0 * 8 + 0] == 640.0);
  assert_true(s.load[1 * 8 + 3] == 640.0);
  assert_true(s.load[3 * 8 + 1] == 320.0);
  assert_true(s.load[2 * 8 + 6] == 160.0);
  eplb_stats_t t;
  assert_int_equal(eplb_stats_read(&t, data_path("ms_part_a.json"),
                                   EPLB_STATS_MINDSPEED, &err), 0);
  assert_memory_equal(s.load, t.load, sizeof(double) * 32);
  eplb_stats_cleanup(&s);
  eplb_stats_cleanup(&t);
}

static void test_mindspeed_sum(void **state) {
  (void)state;
  eplb_stats_t a, b, sum;
  eplb_error_t err;
  assert_int_equal(eplb_stats_read(&a, data_path("ms_part_a.json"), 0, &err), 0);
  assert_int_equal(eplb_stats_read(&b, data_path("ms_part_b.json"), 0, &err), 0);
  assert_int_equal(eplb_stats_read(&sum, data_path("ms_sum.json"), 0, &err), 0);
  assert_int_equal(eplb_stats_add(&a, &b, "a", "b", &err), 0);
  assert_memory_equal(a.load, sum.load, sizeof(double) * 32);
  eplb_stats_cleanup(&a);
  eplb_stats_cleanup(&b);
  eplb_stats_cleanup(&sum);
}

static void test_sglang_dense(void **state) {
  (void)state;
  eplb_stats_t s, a;
  eplb_error_t err;
  assert_int_equal(eplb_stats_read(&s, data_path("sg_dense.json"),
                                   EPLB_STATS_AUTO, &err), 0);
  assert_int_equal(s.num_layers, 6);
  assert_int_equal(s.num_experts, 8);
  assert_int_equal(s.dense_rows, 1);
  int32_t dropped = -1;
  assert_int_equal(eplb_stats_drop_zero_layers(&s, &dropped, &err), 0);
  assert_int_equal(dropped, 2);
  assert_int_equal(s.num_layers, 4);
  assert_int_equal(s.layer_ids[0], 2);
  assert_int_equal(s.layer_ids[3], 5);
  /* The same counts as the MindSpeed file they were made from. */
  assert_int_equal(eplb_stats_read(&a, data_path("ms_part_a.json"), 0, &err), 0);
  assert_memory_equal(s.load, a.load, sizeof(double) * 32);
  eplb_stats_cleanup(&s);
  eplb_stats_cleanup(&a);
}

static void test_sglang_steps(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_error_t err;
  assert_int_equal(eplb_stats_read(&s, data_path("sg_steps.json"),
                                   EPLB_STATS_SGLANG, &err), 0);
  assert_int_equal(s.num_layers, 3);
  assert_int_equal(s.num_experts, 4);
  const double want[12] = {11, 22, 33, 44, 0, 0, 0, 0, 6, 7, 8, 9};
  assert_memory_equal(s.load, want, sizeof(want));
  eplb_stats_cleanup(&s);
}

/* The SGLang fast path gives exactly what the full reader gives (an extra
 * key holding an object sends the same numbers through cJSON), and is
 * taken. */
static void check_fast_matches_full(const char *name, const char *array) {
  char fast_text[2048], full_text[2048];
  snprintf(fast_text, sizeof(fast_text), " {\n  \"logical_count\" : %s\n}\n",
           array);
  snprintf(full_text, sizeof(full_text),
           "{\"x\": {\"y\": 0}, \"logical_count\": %s}", array);
  eplb_stats_t direct, fast, full;
  eplb_error_t err;
  assert_int_equal(eplb__sglang_fast(&direct, fast_text, strlen(fast_text)), 1);
  char fname[64];
  snprintf(fname, sizeof(fname), "fast_%s.json", name);
  assert_int_equal(eplb_stats_read(&fast, write_text(fname, fast_text),
                                   EPLB_STATS_AUTO, &err), 0);
  snprintf(fname, sizeof(fname), "full_%s.json", name);
  assert_int_equal(eplb_stats_read(&full, write_text(fname, full_text),
                                   EPLB_STATS_SGLANG, &err), 0);
  assert_int_equal(fast.num_layers, full.num_layers);
  assert_int_equal(fast.num_experts, full.num_experts);
  assert_int_equal(fast.dense_rows, 1);
  assert_int_equal(full.dense_rows, 1);
  size_t n = (size_t)full.num_layers * (size_t)full.num_experts;
  assert_memory_equal(fast.load, full.load, sizeof(double) * n);
  assert_memory_equal(direct.load, full.load, sizeof(double) * n);
  assert_memory_equal(fast.layer_ids, full.layer_ids, sizeof(int32_t) * (size_t)full.num_layers);
  eplb_stats_cleanup(&direct);
  eplb_stats_cleanup(&fast);
  eplb_stats_cleanup(&full);
}

static void test_sglang_fast_path(void **state) {
  (void)state;
  check_fast_matches_full("ints", "[[0, 0, 0], [1, 22, 333], [4444, 55555, 0]]");
  check_fast_matches_full("floats", "[[0.0, 1.0, 2.50], [1e3, 2.5E-1, 0.1],"
                          "\n [1234567890123456.0, 9007199254740992, 3.000]]");
  check_fast_matches_full("steps", "[[[1, 2], [3, 4.5]], [[10, 20], [30, 0.25]],"
                          " [[0, 0], [1e2, 7]]]");
  check_fast_matches_full("one", "[[7]]");
  /* What it leaves to the full reader (which then says what is wrong). */
  const char *bail[] = {
      "{\"logical_count\": [[1, 2], [3]]}",      /* ragged */
      "{\"logical_count\": [[1, -2]]}",          /* negative */
      "{\"logical_count\": [[1, 1e999]]}",       /* not finite */
      "{\"logical_count\": [[1, 01]]}",          /* not JSON */
      "{\"logical_count\": [[1, 2],]}",          /* not JSON */
      "{\"logical_count\": [[]]}",               /* empty */
      "{\"logical_count\": [1, 2]}",             /* one level */
      "{\"logical_count\": [[[[1]]]]}",          /* four levels */
      "{\"logical_count\": [[[9007199254740992]], [[2]]]}", /* sum > 2^53 */
      "{\"logical_count\": [[1]], \"x\": {}}", /* a key holding an object */
      "{\"logical_count\": [[1]], \"logical_count\": [[2]]}", /* twice */
      "{\"x\": 1, \"logical_count\": [[1]], \"x\": 2}", /* a key twice */
      "{\"logical_\\u0063ount\": [[1]]}",      /* an escaped key */
      "{\"logical_count\": [[1]], \"x\": [1,]}", /* bad skipped value */
      "{\"logical_count\": [[1]]} x",            /* trailing text */
  };
  for (size_t i = 0; i < sizeof(bail) / sizeof(bail[0]); i++) {
    eplb_stats_t s;
    if (eplb__sglang_fast(&s, bail[i], strlen(bail[i])) != 0)
      fail_msg("the fast path accepted %s", bail[i]);
    assert_null(s.load);
  }
  /* Other keys holding scalars and arrays are skipped, in any order. */
  const char *other = "{\"meta\": [1, \"a\", [true, null]], \"logical_count\":"
                      " [[1, 2]], \"v\": -1.5e3, \"s\": \"x y\", \"n\": false}";
  eplb_stats_t s;
  assert_int_equal(eplb__sglang_fast(&s, other, strlen(other)), 1);
  assert_true(s.load[0] == 1 && s.load[1] == 2);
  eplb_stats_cleanup(&s);
}

/* The same for MindSpeed-RL: `body` is the text after the first layer's
 * key "0"; an escaped key ("\u0030" is "0") sends it through cJSON. */
static void check_ms_fast_matches_full(const char *name, const char *body) {
  char fast_text[2048], full_text[2048];
  snprintf(fast_text, sizeof(fast_text), "{\n \"0\" %s", body);
  snprintf(full_text, sizeof(full_text), "{\"\\u0030\" %s", body);
  eplb_stats_t direct, fast, full;
  eplb_error_t err;
  assert_int_equal(eplb__mindspeed_fast(&direct, fast_text, strlen(fast_text)), 1);
  assert_int_equal(eplb__mindspeed_fast(&full, full_text, strlen(full_text)), 0);
  char fname[64];
  snprintf(fname, sizeof(fname), "fast_%s.json", name);
  assert_int_equal(eplb_stats_read(&fast, write_text(fname, fast_text),
                                   EPLB_STATS_MINDSPEED, &err), 0);
  snprintf(fname, sizeof(fname), "full_%s.json", name);
  assert_int_equal(eplb_stats_read(&full, write_text(fname, full_text),
                                   EPLB_STATS_AUTO, &err), 0);
  assert_int_equal(fast.num_layers, full.num_layers);
  assert_int_equal(fast.num_experts, full.num_experts);
  assert_int_equal(fast.dense_rows, 0);
  size_t n = (size_t)full.num_layers * (size_t)full.num_experts;
  assert_memory_equal(fast.load, full.load, sizeof(double) * n);
  assert_memory_equal(direct.load, full.load, sizeof(double) * n);
  assert_memory_equal(fast.layer_ids, full.layer_ids,
                      sizeof(int32_t) * (size_t)full.num_layers);
  eplb_stats_cleanup(&direct);
  eplb_stats_cleanup(&fast);
  eplb_stats_cleanup(&full);
}

static void test_mindspeed_fast_path(void **state) {
  (void)state;
  check_ms_fast_matches_full("ms_one", ": {\"0\": 5}}");
  check_ms_fast_matches_full(
      "ms_shuffled", ": {\"2\": 3, \"0\": 1.0, \"1\": 2.5e1},\n"
      " \"2\": {\"1\": 0, \"2\": 9007199254740992, \"0\": 7},\n"
      " \"1\": {\"0\": 10, \"2\": 30, \"1\": 1234567890123456.0}\n}\n");
  const char *bail[] = {
      "{\"0\": {\"0\": 1, \"2\": 1}}",               /* expert missing */
      "{\"0\": {\"1\": 1, \"1\": 2}}",               /* expert twice */
      "{\"0\": {\"0\": 1, \"1\": 2}, \"1\": {\"0\": 1}}", /* ragged */
      "{\"0\": {\"0\": 1}, \"0\": {\"0\": 2}}",     /* layer twice */
      "{\"0\": {\"0\": 1}, \"2\": {\"0\": 2}}",     /* layer missing */
      "{\"0\": {\"0\": -1}}",                         /* negative */
      "{\"0\": {\"00\": 1}}",                         /* leading zero */
      "{\"0\": {\"0\": \"1\"}}",                     /* a string */
      "{\"0\": {\"0\": 1}} x",                        /* trailing text */
      "{\"0\": {}}",                                   /* empty layer */
      "{}",                                              /* no layer */
      "{\"0\": {\"0\": {\"0\": 1}}}",                /* too deep */
  };
  for (size_t i = 0; i < sizeof(bail) / sizeof(bail[0]); i++) {
    eplb_stats_t s;
    if (eplb__mindspeed_fast(&s, bail[i], strlen(bail[i])) != 0)
      fail_msg("the fast path accepted %s", bail[i]);
    assert_null(s.load);
  }
}

static void test_count_limit(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_error_t err;
  const char *p = write_text("limit.json", "{\"0\": {\"0\": 9007199254740992, "
                                           "\"1\": 0}}");
  assert_int_equal(eplb_stats_read(&s, p, 0, &err), 0);
  assert_true(s.load[0] == EPLB_MAX_COUNT);
  eplb_stats_cleanup(&s);
}

static void test_stats_format_names(void **state) {
  (void)state;
  for (int f = EPLB_STATS_AUTO; f <= EPLB_STATS_SGLANG; f++)
    assert_int_equal(eplb_stats_format_from_name(
                         eplb_stats_format_name((eplb_stats_format_t)f)), f);
  assert_int_equal(eplb_stats_format_from_name("MindSpeed"), -1);
  assert_int_equal(eplb_stats_format_from_name(""), -1);
  assert_int_equal(eplb_stats_format_from_name(NULL), -1);
}

/* ---- statistics: bad files -------------------------------------------- */

typedef struct {
  const char *name;    /* file name (also in the message) */
  const char *text;
  int format;
  int code;
  const char *needle;  /* the key / index / reason the message must name */
} bad_case_t;

static const bad_case_t bad_stats[] = {
    {"syntax.json", "{\"0\": {\"0\": 1,}}", 0, EPLB_EPARSE, "line 1, column 1"},
    {"syntax3.json", "{\n\"0\": {\n\"0\": 1,,\n}}", 0, EPLB_EPARSE, "line 3"},
    {"trunc.json", "{\"0\": {\"0\": 1", 0, EPLB_EPARSE, "truncated"},
    {"garbage.json", "{\"0\": {\"0\": 1}} x", 0, EPLB_EPARSE, "near 'x'"},
    {"empty.json", "  \n", 0, EPLB_EPARSE, "empty"},
    {"array.json", "[1, 2]", 0, EPLB_EPARSE, "top level is an array"},
    {"neither.json", "{\"foo\": 1}", 0, EPLB_EPARSE, "\"foo\""},
    {"nokey.json", "{\"a\": {\"0\": 1}}", EPLB_STATS_MINDSPEED, EPLB_EPARSE, "\"a\""},
    {"lead0.json", "{\"00\": {\"0\": 1}}", 0, EPLB_EPARSE, "\"00\""},
    {"gap.json", "{\"0\": {\"0\": 1}, \"2\": {\"0\": 1}}", 0, EPLB_EPARSE,
     "layer \"2\""},
    {"duplayer.json", "{\"0\": {\"0\": 1}, \"0\": {\"0\": 2}}", 0, EPLB_EPARSE,
     "layer \"0\" appears twice"},
    {"gapexp.json", "{\"0\": {\"0\": 1, \"2\": 1}}", 0, EPLB_EPARSE,
     "expert \"2\""},
    {"dupexp.json", "{\"0\": {\"1\": 1, \"1\": 2}}", 0, EPLB_EPARSE,
     "expert \"1\" appears twice"},
    {"badexp.json", "{\"0\": {\"x\": 1}}", 0, EPLB_EPARSE, "key \"x\""},
    {"ragged.json", "{\"0\": {\"0\": 1, \"1\": 2}, \"1\": {\"0\": 1}}", 0,
     EPLB_ESHAPE, "layer \"1\" has 1 experts"},
    {"string.json", "{\"0\": {\"0\": \"5\"}}", 0, EPLB_EPARSE,
     "layer \"0\", expert \"0\": the count is a string"},
    {"notobj.json", "{\"0\": [1, 2]}", 0, EPLB_EPARSE, "layer \"0\" is an array"},
    {"neg.json", "{\"0\": {\"0\": 3, \"1\": -1}}", 0, EPLB_ECOUNT,
     "expert \"1\": count -1 is negative"},
    {"huge.json", "{\"0\": {\"0\": 9007199254740994}}", 0, EPLB_ECOUNT, "2^53"},
    {"inf.json", "{\"0\": {\"0\": 1e999}}", 0, EPLB_ECOUNT, "not finite"},
    {"sgmode.json", "{\"logical_count\": [[1]]}", EPLB_STATS_MINDSPEED,
     EPLB_EPARSE, "--format sglang"},
    {"msmode.json", "{\"0\": {\"0\": 1}}", EPLB_STATS_SGLANG, EPLB_EPARSE,
     "no \"logical_count\""},
    {"sgragged.json", "{\"logical_count\": [[1, 2], [3]]}", 0, EPLB_ESHAPE,
     "logical_count[1]"},
    {"sgragged3.json", "{\"logical_count\": [[[1, 2]], [[1, 2], [3, 4]]]}", 0,
     EPLB_ESHAPE, "logical_count[1] holds 2 layers but the first step holds 1"},
    {"sgmixed.json", "{\"logical_count\": [[[1, 2]], [3]]}", 0, EPLB_ESHAPE,
     "logical_count[1][0]"},
    {"sgnull.json", "{\"logical_count\": [[1, null]]}", 0, EPLB_EPARSE,
     "logical_count[0][1] is null"},
    {"sgneg.json", "{\"logical_count\": [[1, -2.5]]}", 0, EPLB_ECOUNT,
     "logical_count[0][1]: count -2.5 is negative"},
    {"sgnum.json", "{\"logical_count\": 5}", 0, EPLB_EPARSE,
     "\"logical_count\" is a number"},
    {"sgempty.json", "{\"logical_count\": []}", 0, EPLB_EPARSE, "(empty)"},
    {"sgflat.json", "{\"logical_count\": [1, 2]}", 0, EPLB_EPARSE,
     "logical_count[0] is a number"},
    {"sgsum.json", "{\"logical_count\": [[[9007199254740992]], [[2]]]}", 0,
     EPLB_ECOUNT, "sum over the steps"},
};

static void test_bad_stats(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(bad_stats) / sizeof(bad_stats[0]); i++) {
    const bad_case_t *c = &bad_stats[i];
    const char *path = write_text(c->name, c->text);
    eplb_stats_t s;
    eplb_error_t err;
    eplb_error_clear(&err);
    int rc = eplb_stats_read(&s, path, (eplb_stats_format_t)c->format, &err);
    if (rc != c->code)
      fail_msg("%s: code %d (%s), want %d", c->name, rc, err.msg, c->code);
    assert_msg_has(&err, path);
    assert_msg_has(&err, c->needle);
    assert_null(strchr(err.msg, '\n'));
    /* A failed read leaves *out empty. */
    assert_null(s.load);
    assert_int_equal(s.num_layers, 0);
  }
}

static void test_stats_missing_file(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_error_t err;
  const char *path = tmp_path("does_not_exist.json");
  assert_int_equal(eplb_stats_read(&s, path, 0, &err), EPLB_EIO);
  assert_msg_has(&err, path);
}

static void test_stats_nul_byte(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_error_t err;
  const char *path = write_bytes("nul.json", "{\"0\": {\"0\": 1}}\0xx", 18);
  assert_int_equal(eplb_stats_read(&s, path, 0, &err), EPLB_EPARSE);
  assert_msg_has(&err, "NUL byte at offset 15");
}

/* Builds "{"0": {...}, ..., "<n-1>": {...}}" (n layers of one expert). */
static char *many_layers(int n) {
  char *buf = malloc((size_t)n * 24 + 8);
  assert_non_null(buf);
  char *p = buf;
  *p++ = '{';
  for (int l = 0; l < n; l++)
    p += sprintf(p, "%s\"%d\": {\"0\": 1}", l ? ", " : "", l);
  strcpy(p, "}");
  return buf;
}

static void test_stats_too_big(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_error_t err;
  char *text = many_layers(EPLB_MAX_LAYERS + 1);
  const char *path = write_text("many_layers.json", text);
  free(text);
  assert_int_equal(eplb_stats_read(&s, path, 0, &err), EPLB_ESHAPE);
  assert_msg_has(&err, "4097 layers");
  /* One SGLang row with 65537 experts. */
  size_t n = EPLB_MAX_EXPERTS + 1;
  text = malloc(n * 3 + 64);
  assert_non_null(text);
  char *p = text + sprintf(text, "{\"logical_count\": [[");
  for (size_t e = 0; e < n; e++)
    p += sprintf(p, e ? ",0" : "0");
  strcpy(p, "]]}");
  path = write_text("many_experts.json", text);
  free(text);
  assert_int_equal(eplb_stats_read(&s, path, 0, &err), EPLB_ESHAPE);
  assert_msg_has(&err, "65537 experts");
  /* At the limit it reads. */
  text = many_layers(EPLB_MAX_LAYERS);
  path = write_text("max_layers.json", text);
  free(text);
  assert_int_equal(eplb_stats_read(&s, path, 0, &err), 0);
  assert_int_equal(s.num_layers, EPLB_MAX_LAYERS);
  eplb_stats_cleanup(&s);
}

/* ---- maps: reading ---------------------------------------------------- */

static void test_map_json_read(void **state) {
  (void)state;
  eplb_placement_t p;
  eplb_error_t err;
  assert_int_equal(eplb_placement_read(&p, data_path("map_small.json"),
                                       EPLB_MAP_AUTO, &err), 0);
  assert_int_equal(p.num_layers, 2);
  assert_int_equal(p.num_gpus, 2);
  assert_int_equal(p.num_slots, 10);
  assert_int_equal(p.num_experts, 8);
  assert_int_equal(p.layer_ids[0], 0);
  assert_int_equal(p.layer_ids[1], 1);
  const int32_t want[20] = {7, 2, 0, 3, 5, 6, 1, 4, 7, 2,
                            /* layer 1 lists device 1 first */
                            5, 6, 7, 0, 1, 0, 1, 2, 3, 4};
  assert_memory_equal(p.phy2log, want, sizeof(want));
  eplb_placement_cleanup(&p);
}

static void test_map_yaml_read(void **state) {
  (void)state;
  eplb_placement_t p;
  eplb_error_t err;
  assert_int_equal(eplb_placement_read(&p, data_path("map_small.yaml"),
                                       EPLB_MAP_AUTO, &err), 0);
  assert_int_equal(p.num_layers, 2);
  assert_int_equal(p.num_gpus, 1); /* the YAML does not say G */
  assert_int_equal(p.num_slots, 10);
  assert_int_equal(p.num_experts, 8);
  /* Sorted by key; a quoted key, a comment and a continued list. */
  assert_int_equal(p.layer_ids[0], 3);
  assert_int_equal(p.layer_ids[1], 4);
  const int32_t want[20] = {7, 2, 0, 3, 5, 6, 1, 4, 7, 2,
                            5, 6, 7, 0, 1, 0, 1, 2, 3, 4};
  assert_memory_equal(p.phy2log, want, sizeof(want));
  eplb_placement_cleanup(&p);
}

static void test_map_format_names(void **state) {
  (void)state;
  for (int f = EPLB_MAP_AUTO; f <= EPLB_MAP_TRTLLM_YAML; f++)
    assert_int_equal(
        eplb_map_format_from_name(eplb_map_format_name((eplb_map_format_t)f)), f);
  assert_int_equal(eplb_map_format_from_name("yaml"), -1);
  assert_int_equal(eplb_map_format_from_name(NULL), -1);
}

#define DEV(id, ...) "{\"device_id\": " #id ", \"device_expert\": [" __VA_ARGS__ "]}"
#define LAYER(id, n, ...) \
  "{\"layer_id\": " #id ", \"device_count\": " #n ", \"device_list\": [" __VA_ARGS__ "]}"
#define MAP(n, ...) "{\"moe_layer_count\": " #n ", \"layer_list\": [" __VA_ARGS__ "]}"

static const bad_case_t bad_maps[] = {
    {"m_count.json", MAP(2, LAYER(0, 1, DEV(0, "0, 1"))), EPLB_MAP_EXPERT_MAP,
     EPLB_ESHAPE, "moe_layer_count is 2 but layer_list holds 1"},
    {"m_devcount.json",
     MAP(2, LAYER(0, 1, DEV(0, "0, 1")) ", " LAYER(1, 2, DEV(0, "0") ", " DEV(1, "1"))),
     0, EPLB_ESHAPE, "layer_list[1].device_count is 2"},
    {"m_slots.json", MAP(1, LAYER(0, 2, DEV(0, "0, 1") ", " DEV(1, "2"))), 0,
     EPLB_ESHAPE, "layer_list[0].device_list[1].device_expert holds 1"},
    {"m_neg.json", MAP(1, LAYER(0, 1, DEV(0, "0, 1, -1"))), 0, EPLB_EMAP,
     "layer_list[0].device_list[0].device_expert[2] is out of range"},
    {"m_frac.json", MAP(1, LAYER(0, 1, DEV(0, "0, 1.5"))), 0, EPLB_EMAP,
     "device_expert[1] is not an integer"},
    {"m_str.json", MAP(1, LAYER(0, 1, DEV(0, "0, \"1\""))), 0, EPLB_EPARSE,
     "device_expert[1] is not a number"},
    {"m_dupdev.json", MAP(1, LAYER(0, 2, DEV(0, "0") ", " DEV(0, "1"))), 0,
     EPLB_EPARSE, "device_id 0 appears twice"},
    {"m_devid.json", MAP(1, LAYER(0, 2, DEV(0, "0") ", " DEV(2, "1"))), 0,
     EPLB_EPARSE, "layer_list[0].device_list[1].device_id is out of range"},
    {"m_duplayer.json",
     MAP(2, LAYER(5, 1, DEV(0, "0, 1")) ", " LAYER(5, 1, DEV(0, "1, 0"))), 0,
     EPLB_EPARSE, "both have layer_id 5"},
    {"m_hole.json", MAP(1, LAYER(0, 1, DEV(0, "0, 2, 2"))), 0, EPLB_EMAP,
     "expert 1 has no slot"},
    {"m_nolist.json", "{\"moe_layer_count\": 1, \"layer_list\": [{\"layer_id\": 0, "
     "\"device_count\": 1}]}", 0, EPLB_EPARSE, "device_list is nothing"},
    {"m_nocount.json", "{\"layer_list\": []}", EPLB_MAP_EXPERT_MAP, EPLB_EPARSE,
     "has no \"moe_layer_count\""},
    {"m_top.json", "[1]", EPLB_MAP_EXPERT_MAP, EPLB_EPARSE, "top level is an array"},
    {"m_syntax.json", "{\"moe_layer_count\": 1,\n \"layer_list\": [}", 0,
     EPLB_EPARSE, "line 2"},
    {"y_tab.yaml", "initial_global_assignments:\n\t3: [0]\nnum_slots: 1\n", 0,
     EPLB_EPARSE, "line 2: a tab"},
    {"y_block.yaml", "initial_global_assignments:\n  3:\n    - 0\nnum_slots: 1\n",
     0, EPLB_EPARSE, "line 2: expected '<layer>: [id, id, ...]'"},
    {"y_open.yaml", "initial_global_assignments:\n  3: [0, 1,\nnum_slots: 2\n", 0,
     EPLB_EPARSE, "line 2: the list has no closing ']'"},
    {"y_word.yaml", "initial_global_assignments:\n  3: [0, x]\nnum_slots: 2\n", 0,
     EPLB_EPARSE, "line 2, column 10: 'x'"},
    {"y_neg.yaml", "initial_global_assignments:\n  3: [0, -4]\nnum_slots: 2\n", 0,
     EPLB_EMAP, "line 2: expert id -4"},
    {"y_len.yaml",
     "initial_global_assignments:\n  3: [0, 1]\n  4: [1, 0, 1]\nnum_slots: 2\n", 0,
     EPLB_ESHAPE, "line 3: layer 4 lists 3 slots"},
    {"y_slots.yaml", "initial_global_assignments:\n  3: [0, 1]\nnum_slots: 4\n", 0,
     EPLB_ESHAPE, "num_slots is 4 but the layers list 2"},
    {"y_noslots.yaml", "initial_global_assignments:\n  3: [0, 1]\n", 0,
     EPLB_EPARSE, "no num_slots"},
    {"y_nolayers.yaml", "num_slots: 4\nlayer_updates_per_iter: 0\n", 0,
     EPLB_EPARSE, "no layers under initial_global_assignments"},
    {"y_dup.yaml",
     "initial_global_assignments:\n  3: [0, 1]\n  3: [1, 0]\nnum_slots: 2\n", 0,
     EPLB_EPARSE, "layer 3 appears twice (lines 2 and 3)"},
    {"y_tail.yaml", "initial_global_assignments:\n  3: [0, 1] 2\nnum_slots: 2\n",
     0, EPLB_EPARSE, "line 2: text after the closing ']'"},
    {"y_twice.yaml",
     "num_slots: 2\ninitial_global_assignments:\n  3: [0, 1]\nnum_slots: 2\n", 0,
     EPLB_EPARSE, "line 4: num_slots appears twice"},
    {"y_key.yaml", "initial_global_assignments:\n  x3: [0, 1]\nnum_slots: 2\n", 0,
     EPLB_EPARSE, "line 2: layer key 'x3'"},
    {"y_indent.yaml",
     "initial_global_assignments:\n  3: [0, 1]\n   4: [1, 0]\nnum_slots: 2\n", 0,
     EPLB_EPARSE, "line 3: indented by 3 spaces"},
    {"y_scalar.yaml", "num_slots: two\n", 0, EPLB_EPARSE,
     "line 1: num_slots is 'two'"},
    {"y_hole.yaml", "initial_global_assignments:\n  3: [0, 2]\nnum_slots: 2\n",
     EPLB_MAP_TRTLLM_YAML, EPLB_EMAP, "layer 3: expert 1 has no slot"},
};

static void test_bad_maps(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(bad_maps) / sizeof(bad_maps[0]); i++) {
    const bad_case_t *c = &bad_maps[i];
    const char *path = write_text(c->name, c->text);
    eplb_placement_t p;
    eplb_error_t err;
    eplb_error_clear(&err);
    int rc = eplb_placement_read(&p, path, (eplb_map_format_t)c->format, &err);
    if (rc != c->code)
      fail_msg("%s: code %d (%s), want %d", c->name, rc, err.msg, c->code);
    assert_msg_has(&err, path);
    assert_msg_has(&err, c->needle);
    assert_null(p.phy2log);
  }
}

/* Unknown top-level YAML keys (and their blocks) are ignored. */
static void test_yaml_ignores_other_keys(void **state) {
  (void)state;
  const char *path = write_text(
      "y_other.yaml",
      "moe_config:\n  backend: WideEP\n  max_num_tokens: 9216\n"
      "initial_global_assignments:  # comment\n\n  7: [1, 0]  # here too\n"
      "num_slots: 2\r\n");
  eplb_placement_t p;
  eplb_error_t err;
  assert_int_equal(eplb_placement_read(&p, path, EPLB_MAP_TRTLLM_YAML, &err), 0);
  assert_int_equal(p.layer_ids[0], 7);
  assert_int_equal(p.phy2log[0], 1);
  assert_int_equal(p.num_experts, 2);
  eplb_placement_cleanup(&p);
}

/* ---- maps: writing ---------------------------------------------------- */

/* A deterministic valid placement: L layers, G GPUs of `per` slots, E
 * experts, layer ids starting at `first_id`. */
static void make_placement(eplb_placement_t *p, int32_t L, int32_t E,
                           int32_t G, int32_t per, int32_t first_id) {
  eplb_error_t err;
  assert_int_equal(eplb_placement_init(p, L, E, G * per, G, &err), 0);
  for (int32_t l = 0; l < L; l++) {
    p->layer_ids[l] = first_id + l;
    for (int32_t s = 0; s < G * per; s++)
      p->phy2log[l * G * per + s] = (s * 7 + l * 3) % E;
  }
  assert_int_equal(eplb_placement_check(p, 0, "test", &err), 0);
}

static void assert_same_placement(const eplb_placement_t *a,
                                  const eplb_placement_t *b) {
  assert_int_equal(a->num_layers, b->num_layers);
  assert_int_equal(a->num_experts, b->num_experts);
  assert_int_equal(a->num_slots, b->num_slots);
  assert_int_equal(a->num_gpus, b->num_gpus);
  assert_memory_equal(a->layer_ids, b->layer_ids,
                      sizeof(int32_t) * (size_t)a->num_layers);
  assert_memory_equal(a->phy2log, b->phy2log,
                      sizeof(int32_t) * (size_t)a->num_layers * (size_t)a->num_slots);
}

static void test_roundtrip_expert_map(void **state) {
  (void)state;
  eplb_placement_t p, q;
  eplb_error_t err;
  make_placement(&p, 5, 16, 4, 5, 0); /* layer ids 0..4 = positions */
  const char *path = tmp_path("rt.json");
  char saved[1024];
  snprintf(saved, sizeof(saved), "%s", path);
  assert_int_equal(eplb_placement_write(&p, saved, EPLB_MAP_EXPERT_MAP, &err), 0);
  assert_int_equal(eplb_placement_read(&q, saved, EPLB_MAP_AUTO, &err), 0);
  assert_same_placement(&p, &q);
  /* Written again from what was read: the same bytes. */
  char *first = slurp(saved);
  assert_int_equal(eplb_placement_write(&q, saved, EPLB_MAP_AUTO, &err), 0);
  char *second = slurp(saved);
  assert_string_equal(first, second);
  assert_non_null(strstr(first, "\"moe_layer_count\": 5"));
  assert_non_null(strstr(first, "{\"device_id\": 3, \"device_expert\": ["));
  free(first);
  free(second);
  eplb_placement_cleanup(&p);
  eplb_placement_cleanup(&q);
}

static void test_roundtrip_trtllm_yaml(void **state) {
  (void)state;
  eplb_placement_t p, q;
  eplb_error_t err;
  make_placement(&p, 3, 12, 4, 4, 3); /* decoder layers 3, 4, 5 */
  char path[1024];
  snprintf(path, sizeof(path), "%s", tmp_path("rt.yaml"));
  assert_int_equal(eplb_placement_write(&p, path, EPLB_MAP_AUTO, &err), 0);
  char *text = slurp(path);
  assert_non_null(strstr(text, "initial_global_assignments:\n  3: ["));
  assert_non_null(strstr(text, "\nnum_slots: 16\nlayer_updates_per_iter: 0\n"));
  free(text);
  assert_int_equal(eplb_placement_read(&q, path, EPLB_MAP_TRTLLM_YAML, &err), 0);
  assert_int_equal(q.num_gpus, 1);
  q.num_gpus = 4; /* the caller regroups */
  assert_same_placement(&p, &q);
  eplb_placement_cleanup(&p);
  eplb_placement_cleanup(&q);
}

/* No "<path>.tmp.*" is left in the directory. */
static void assert_no_temp(const char *path) {
  const char *slash = strrchr(path, '/');
  char dir[1024], prefix[1024];
  snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
  snprintf(prefix, sizeof(prefix), "%s.tmp.", slash + 1);
  DIR *d = opendir(dir);
  assert_non_null(d);
  struct dirent *de;
  while ((de = readdir(d)) != NULL)
    if (strncmp(de->d_name, prefix, strlen(prefix)) == 0)
      fail_msg("temporary file %s/%s left behind", dir, de->d_name);
  closedir(d);
}

static void test_atomic_write(void **state) {
  (void)state;
  eplb_placement_t p;
  eplb_error_t err;
  make_placement(&p, 2, 8, 2, 4, 0);
  char path[1024];
  snprintf(path, sizeof(path), "%s", tmp_path("atomic.json"));
  assert_int_equal(eplb_placement_write(&p, path, EPLB_MAP_EXPERT_MAP, &err), 0);
  assert_no_temp(path);
  char *before = slurp(path);
  /* An invalid placement is refused and the old file stays as it was. */
  int32_t saved3 = p.phy2log[3];
  p.phy2log[3] = 99;
  assert_int_equal(eplb_placement_write(&p, path, EPLB_MAP_EXPERT_MAP, &err),
                   EPLB_EMAP);
  assert_msg_has(&err, path);
  assert_msg_has(&err, "expert 99");
  char *after = slurp(path);
  assert_string_equal(before, after);
  assert_no_temp(path);
  /* YAML needs distinct layer ids. */
  p.phy2log[3] = saved3;
  p.layer_ids[1] = p.layer_ids[0];
  char ypath[1024];
  snprintf(ypath, sizeof(ypath), "%s", tmp_path("dup_ids.yaml"));
  assert_int_equal(eplb_placement_write(&p, ypath, EPLB_MAP_TRTLLM_YAML, &err),
                   EPLB_EMAP);
  assert_msg_has(&err, "same id");
  assert_int_equal(access(ypath, F_OK), -1);
  /* A directory that does not exist: EIO naming the path, nothing left. */
  snprintf(ypath, sizeof(ypath), "%s/no_such_dir/map.json", tmp_dir());
  p.layer_ids[1] = 1;
  assert_int_equal(eplb_placement_write(&p, ypath, EPLB_MAP_EXPERT_MAP, &err),
                   EPLB_EIO);
  assert_msg_has(&err, ypath);
  free(before);
  free(after);
  eplb_placement_cleanup(&p);
}

/* A plan of real statistics survives both writers and both readers. */
static void test_plan_roundtrip(void **state) {
  (void)state;
  eplb_stats_t s;
  eplb_placement_t p, q;
  eplb_plan_opts_t o;
  eplb_error_t err;
  assert_int_equal(eplb_stats_read(&s, data_path("sg_dense.json"), 0, &err), 0);
  assert_int_equal(eplb_stats_drop_zero_layers(&s, NULL, &err), 0);
  eplb_plan_opts_default(&o);
  o.num_slots = 12;
  o.num_gpus = 4;
  assert_int_equal(eplb_plan(&s, &o, &p, &err), 0);
  char path[1024];
  snprintf(path, sizeof(path), "%s", tmp_path("plan.yaml"));
  assert_int_equal(eplb_placement_write(&p, path, EPLB_MAP_TRTLLM_YAML, &err), 0);
  assert_int_equal(eplb_placement_read(&q, path, EPLB_MAP_AUTO, &err), 0);
  q.num_gpus = 4;
  assert_same_placement(&p, &q); /* layer ids 2..5 kept by the YAML */
  eplb_placement_cleanup(&q);
  snprintf(path, sizeof(path), "%s", tmp_path("plan.json"));
  assert_int_equal(eplb_placement_write(&p, path, EPLB_MAP_EXPERT_MAP, &err), 0);
  assert_int_equal(eplb_placement_read(&q, path, EPLB_MAP_AUTO, &err), 0);
  assert_int_equal(q.layer_ids[0], 0); /* the JSON numbers MoE layers */
  assert_memory_equal(p.phy2log, q.phy2log, sizeof(int32_t) * 4 * 12);
  eplb_placement_cleanup(&q);
  eplb_placement_cleanup(&p);
  eplb_stats_cleanup(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mindspeed_good),
      cmocka_unit_test(test_mindspeed_sum),
      cmocka_unit_test(test_sglang_dense),
      cmocka_unit_test(test_sglang_steps),
      cmocka_unit_test(test_sglang_fast_path),
      cmocka_unit_test(test_mindspeed_fast_path),
      cmocka_unit_test(test_count_limit),
      cmocka_unit_test(test_stats_format_names),
      cmocka_unit_test(test_bad_stats),
      cmocka_unit_test(test_stats_missing_file),
      cmocka_unit_test(test_stats_nul_byte),
      cmocka_unit_test(test_stats_too_big),
      cmocka_unit_test(test_map_json_read),
      cmocka_unit_test(test_map_yaml_read),
      cmocka_unit_test(test_map_format_names),
      cmocka_unit_test(test_bad_maps),
      cmocka_unit_test(test_yaml_ignores_other_keys),
      cmocka_unit_test(test_roundtrip_expert_map),
      cmocka_unit_test(test_roundtrip_trtllm_yaml),
      cmocka_unit_test(test_atomic_write),
      cmocka_unit_test(test_plan_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
