/* test_formats_dumps.c - the dump-directory readers (TensorRT-LLM
 * safetensors, MindIE CSV) and the phy2log maps (SGLang, DeepSeek).
 *
 * Every dump is made by the test in $EPLB_TEST_TMPDIR, byte by byte, so
 * each corruption is exactly one: a truncated data section, a header length
 * past the end, a wrong dtype or shape, a bad key, a negative count, a
 * missing rank, a CSV with a torn block or a ragged row.  Good dumps give
 * the hand-summed numbers; --iter-range selects iterations; the SGLang and
 * DeepSeek writers round-trip through their reader. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eplb/eplb.h"
#include "eplb/series.h"
#include "util/fileio.h"

static char base[512];

/* A fresh directory $EPLB_TEST_TMPDIR/dumps_<pid>_<name>. */
static const char *mkdir_tmp(const char *name, char *buf, size_t n) {
  const char *d = getenv("EPLB_TEST_TMPDIR");
  snprintf(base, sizeof(base), "%s", d && d[0] ? d : "/tmp");
  snprintf(buf, n, "%s/dumps_%ld_%s", base, (long)getpid(), name);
  mkdir(buf, 0755);
  return buf;
}

/* Writes `len` bytes to dir/name. */
static void put(const char *dir, const char *name, const void *data,
                size_t len) {
  char path[1024];
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

static void put_text(const char *dir, const char *name, const char *text) {
  put(dir, name, text, strlen(text));
}

/* ---- TensorRT-LLM ------------------------------------------------------ */

/* One tensor of a hand-built safetensors file. */
typedef struct {
  const char *key, *dtype;
  int32_t n;           /* values */
  int64_t v[4];
} tens_t;

/* Builds rank{r}.safetensors from k tensors; `cut` bytes are dropped from
 * the end (truncation), `lie` is added to the header length. */
static void put_safetensors(const char *dir, int r, const tens_t *t, int k,
                            size_t cut, uint64_t lie) {
  char head[2048];
  size_t hl = 0, off = 0;
  hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "{\"__metadata__\": "
                         "{\"format\": \"pt\"}");
  for (int i = 0; i < k; i++) {
    size_t w = t[i].dtype[1] == '3' ? 4 : 8; /* I32, F32 */
    hl += (size_t)snprintf(head + hl, sizeof(head) - hl,
                           ", \"%s\": {\"dtype\": \"%s\", \"shape\": [%d], "
                           "\"data_offsets\": [%zu, %zu]}", t[i].key,
                           t[i].dtype, (int)t[i].n, off, off + w * t[i].n);
    off += w * (size_t)t[i].n;
  }
  hl += (size_t)snprintf(head + hl, sizeof(head) - hl, "}");
  unsigned char buf[4096];
  uint64_t len = hl + lie;
  for (int b = 0; b < 8; b++)
    buf[b] = (unsigned char)(len >> (8 * b));
  memcpy(buf + 8, head, hl);
  size_t pos = 8 + hl;
  for (int i = 0; i < k; i++) {
    size_t w = t[i].dtype[1] == '3' ? 4 : 8; /* I32, F32 */
    for (int32_t j = 0; j < t[i].n; j++)
      for (size_t b = 0; b < w; b++)
        buf[pos++] = (unsigned char)((uint64_t)t[i].v[j] >> (8 * b));
  }
  char name[64];
  snprintf(name, sizeof(name), "rank%d.safetensors", r);
  put(dir, name, buf, pos - cut);
}

/* A good 2-rank dump: iterations 10, 11; decoder layers 3 and 5; E = 3. */
static void good_trtllm(const char *dir) {
  put_text(dir, "meta_info.json",
           "{\"num_experts\": 3, \"num_experts_per_token\": 2}");
  tens_t r0[] = {{"10_3", "I64", 3, {1, 2, 3}}, {"10_5", "I64", 3, {4, 0, 0}},
                 {"11_3", "I64", 3, {10, 0, 0}}, {"11_5", "I64", 3, {0, 0, 7}}};
  tens_t r1[] = {{"10_3", "I32", 3, {5, 5, 5}}, {"10_5", "I32", 3, {1, 1, 1}},
                 {"11_3", "I32", 3, {0, 20, 0}}, {"11_5", "I32", 3, {0, 9, 0}}};
  put_safetensors(dir, 0, r0, 4, 0, 0);
  put_safetensors(dir, 1, r1, 4, 0, 0);
}

static void test_trtllm_good(void **state) {
  (void)state;
  char dir[600];
  mkdir_tmp("trt_good", dir, sizeof(dir));
  good_trtllm(dir);
  eplb_stats_t s;
  eplb_error_t err;
  assert_int_equal(eplb_stats_read(&s, dir, EPLB_STATS_AUTO, &err), 0);
  assert_int_equal(s.num_layers, 2);
  assert_int_equal(s.num_experts, 3);
  assert_int_equal(s.layer_ids[0], 3);
  assert_int_equal(s.layer_ids[1], 5);
  const double want[6] = {16, 27, 8, 5, 10, 8};
  for (int i = 0; i < 6; i++)
    assert_true(s.load[i] == want[i]);
  eplb_stats_cleanup(&s);
  /* Only iteration 11. */
  eplb_stats_read_opts_t o = {11, 11};
  assert_int_equal(eplb_stats_read_opts(&s, dir, EPLB_STATS_TRTLLM, &o, &err), 0);
  const double want11[6] = {10, 20, 0, 0, 9, 7};
  for (int i = 0; i < 6; i++)
    assert_true(s.load[i] == want11[i]);
  eplb_stats_cleanup(&s);
  /* A range with no iteration says which ones there are. */
  o.iter_min = 20;
  o.iter_max = 30;
  assert_int_equal(eplb_stats_read_opts(&s, dir, EPLB_STATS_AUTO, &o, &err),
                   EPLB_EARG);
  assert_non_null(strstr(err.msg, "iterations 10..11"));
  assert_null(s.load);
}

static void test_trtllm_series(void **state) {
  (void)state;
  char dir[600];
  mkdir_tmp("trt_series", dir, sizeof(dir));
  good_trtllm(dir);
  eplb_series_t s;
  eplb_error_t err;
  assert_int_equal(eplb_stats_read_trtllm_series(&s, dir, NULL, &err), 0);
  assert_int_equal(s.num_steps, 2);
  assert_int_equal(s.num_layers, 2);
  assert_int_equal(s.layer_ids[1], 5);
  /* Step 1 = iteration 11: layer 3 {10, 20, 0}, layer 5 {0, 9, 7}. */
  const double want[6] = {10, 20, 0, 0, 9, 7};
  for (int i = 0; i < 6; i++)
    assert_true(s.load[6 + i] == want[i]);
  eplb_series_cleanup(&s);
  eplb_stats_read_opts_t o = {10, 10};
  assert_int_equal(eplb_stats_read_trtllm_series(&s, dir, &o, &err), 0);
  assert_int_equal(s.num_steps, 1);
  assert_true(s.load[0] == 6 && s.load[1] == 7);
  eplb_series_cleanup(&s);
  /* Iteration 11 lacks layer 5 in every rank. */
  mkdir_tmp("trt_series_gap", dir, sizeof(dir));
  put_text(dir, "meta_info.json", "{\"num_experts\": 3}");
  tens_t r0[] = {{"10_3", "I64", 3, {1, 2, 3}}, {"10_5", "I64", 3, {4, 0, 0}},
                 {"11_3", "I64", 3, {10, 0, 0}}};
  put_safetensors(dir, 0, r0, 3, 0, 0);
  assert_int_equal(eplb_stats_read_trtllm_series(&s, dir, NULL, &err), EPLB_ESHAPE);
  assert_non_null(strstr(err.msg, "\"11_5\""));
  assert_null(s.load);
}

/* Reads dir expecting `code` and `needle` in the message. */
static void expect_dir(const char *dir, int code, const char *needle) {
  eplb_stats_t s;
  eplb_error_t err;
  eplb_error_clear(&err);
  int rc = eplb_stats_read(&s, dir, EPLB_STATS_AUTO, &err);
  if (rc != code || strstr(err.msg, needle) == NULL)
    fail_msg("%s: rc %d (want %d), message: %s (want '%s')", dir, rc, code,
             err.msg, needle);
  assert_null(s.load);
  assert_null(strchr(err.msg, '\n'));
}

static void test_trtllm_bad(void **state) {
  (void)state;
  char dir[600];
  tens_t ok[] = {{"0_3", "I64", 3, {1, 2, 3}}};
  tens_t neg[] = {{"0_3", "I64", 3, {1, -2, 3}}};
  tens_t f32[] = {{"0_3", "F32", 3, {1, 2, 3}}};
  tens_t shp[] = {{"0_3", "I64", 2, {1, 2}}};
  tens_t key[] = {{"layer3", "I64", 3, {1, 2, 3}}};
  const char *meta = "{\"num_experts\": 3}";

  mkdir_tmp("trt_trunc", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, ok, 1, 5, 0);
  expect_dir(dir, EPLB_EPARSE, "truncated");

  mkdir_tmp("trt_hlen", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, ok, 1, 0, 1000);
  expect_dir(dir, EPLB_EPARSE, "header length");

  mkdir_tmp("trt_neg", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, neg, 1, 0, 0);
  expect_dir(dir, EPLB_ECOUNT, "key \"0_3\", expert 1");

  mkdir_tmp("trt_dtype", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, f32, 1, 0, 0);
  expect_dir(dir, EPLB_EPARSE, "dtype \"F32\"");

  mkdir_tmp("trt_shape", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, shp, 1, 0, 0);
  expect_dir(dir, EPLB_ESHAPE, "num_experts = 3");

  mkdir_tmp("trt_key", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, key, 1, 0, 0);
  expect_dir(dir, EPLB_EPARSE, "\"layer3\"");

  mkdir_tmp("trt_gap", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, ok, 1, 0, 0);
  put_safetensors(dir, 2, ok, 1, 0, 0);
  expect_dir(dir, EPLB_EIO, "a rank's file is missing");

  mkdir_tmp("trt_meta", dir, sizeof(dir));
  put_text(dir, "meta_info.json", "{\"num_experts\": -3}");
  put_safetensors(dir, 0, ok, 1, 0, 0);
  expect_dir(dir, EPLB_EPARSE, "meta_info.json: \"num_experts\"");

  /* Rank files holding no tensor: the message says so (not "iterations
   * -1..-1" of a range nobody gave). */
  mkdir_tmp("trt_notensor", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, ok, 0, 0, 0);
  expect_dir(dir, EPLB_EPARSE, "holds no tensor");

  mkdir_tmp("trt_norank", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  expect_dir(dir, EPLB_EIO, "no rank{r}.safetensors");

  mkdir_tmp("trt_empty", dir, sizeof(dir));
  expect_dir(dir, EPLB_EIO, "neither meta_info.json");

  /* A tensor named twice in one header: its counts must not be summed
   * twice; the file is rejected, naming the key. */
  tens_t twice[] = {{"0_3", "I64", 3, {1, 2, 3}}, {"0_3", "I64", 3, {1, 2, 3}}};
  mkdir_tmp("trt_twice", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, twice, 2, 0, 0);
  expect_dir(dir, EPLB_EPARSE, "\"0_3\" appears twice");

  /* Two ranks whose counts sum to 2^53 + 1: exact up to 2^53, the sum
   * one past it must not round back below and pass. */
  tens_t big0[] = {{"0_3", "I64", 3, {1, (1LL << 53) - 1, 3}}};
  tens_t big1[] = {{"0_3", "I64", 3, {1, 2, 3}}};
  mkdir_tmp("trt_sum53", dir, sizeof(dir));
  put_text(dir, "meta_info.json", meta);
  put_safetensors(dir, 0, big0, 1, 0, 0);
  put_safetensors(dir, 1, big1, 1, 0, 0);
  expect_dir(dir, EPLB_ECOUNT, "expert 1");

  /* A duplicate key in meta_info.json is refused by name. */
  mkdir_tmp("trt_meta_twice", dir, sizeof(dir));
  put_text(dir, "meta_info.json",
           "{\"num_experts\": 3, \"num_experts\": 4}");
  put_safetensors(dir, 0, ok, 1, 0, 0);
  expect_dir(dir, EPLB_EPARSE, "num_experts");
}

/* ---- MindIE ------------------------------------------------------------ */

static void test_mindie_good(void **state) {
  (void)state;
  char dir[600], sub[700];
  mkdir_tmp("mie_good", dir, sizeof(dir));
  put_text(dir, "model_gen_config.json",
           "{\"num_moe_layers\": 2, \"collection_Interval\": 8, "
           "\"num_of_experts\": 4, \"num_of_selected_experts\": [2]}");
  /* Two blocks: only the last counts (cumulative). */
  put_text(dir, "decode_0.csv", "1,1\n1,1\n5,6\n7,8\n");
  put_text(dir, "decode_1.csv", "0,0\n0,0\n1,2\n3,4\n");
  snprintf(sub, sizeof(sub), "%s/prefill", dir);
  mkdir(sub, 0755);
  put_text(sub, "prefill_0.csv", "10,0\r\n0,10\r\n");
  eplb_stats_t s;
  eplb_error_t err;
  assert_int_equal(eplb_stats_read(&s, dir, EPLB_STATS_AUTO, &err), 0);
  const double want[8] = {15, 6, 1, 2, 7, 18, 3, 4};
  for (int i = 0; i < 8; i++)
    if (s.load[i] != want[i])
      fail_msg("load[%d] = %g, want %g", i, s.load[i], want[i]);
  eplb_stats_cleanup(&s);
  /* With an expert map: device 0 holds experts 3, 0; device 1 holds 1, 2. */
  put_text(dir, "map.json",
           "{\"moe_layer_count\": 2, \"layer_list\": ["
           "{\"layer_id\": 0, \"device_count\": 2, \"device_list\": ["
           "{\"device_id\": 0, \"device_expert\": [3, 0]},"
           "{\"device_id\": 1, \"device_expert\": [1, 2]}]},"
           "{\"layer_id\": 1, \"device_count\": 2, \"device_list\": ["
           "{\"device_id\": 0, \"device_expert\": [3, 0]},"
           "{\"device_id\": 1, \"device_expert\": [1, 2]}]}]}");
  put_text(dir, "model_gen_config.json",
           "{\"num_moe_layers\": 2, \"num_of_experts\": 4, "
           "\"eplb_expert_map_file\": \"map.json\"}");
  assert_int_equal(eplb_stats_read(&s, dir, EPLB_STATS_MINDIE, &err), 0);
  const double want_map[8] = {6, 1, 2, 15, 18, 3, 4, 7};
  for (int i = 0; i < 8; i++)
    if (s.load[i] != want_map[i])
      fail_msg("mapped load[%d] = %g, want %g", i, s.load[i], want_map[i]);
  eplb_stats_cleanup(&s);
}

static void test_mindie_bad(void **state) {
  (void)state;
  char dir[600];
  const char *cfg = "{\"num_moe_layers\": 2, \"num_of_experts\": 4}";
  mkdir_tmp("mie_torn", dir, sizeof(dir));
  put_text(dir, "model_gen_config.json", cfg);
  put_text(dir, "decode_0.csv", "1,2\n3,4\n5,6\n");
  expect_dir(dir, EPLB_EPARSE, "decode_0.csv: 3 rows");

  mkdir_tmp("mie_ragged", dir, sizeof(dir));
  put_text(dir, "model_gen_config.json", cfg);
  put_text(dir, "decode_0.csv", "1,2\n\n3\n");
  expect_dir(dir, EPLB_EPARSE, "decode_0.csv: line 3 has a different");

  mkdir_tmp("mie_junk", dir, sizeof(dir));
  put_text(dir, "model_gen_config.json", cfg);
  put_text(dir, "decode_0.csv", "1,2\n3,x\n");
  expect_dir(dir, EPLB_EPARSE, "line 2 is not a number");

  mkdir_tmp("mie_neg", dir, sizeof(dir));
  put_text(dir, "model_gen_config.json", cfg);
  put_text(dir, "decode_0.csv", "1,2\n3,-4\n");
  expect_dir(dir, EPLB_EPARSE, "negative");

  mkdir_tmp("mie_wide", dir, sizeof(dir));
  put_text(dir, "model_gen_config.json", cfg);
  put_text(dir, "decode_0.csv", "1,2,3\n3,4,5\n");
  put_text(dir, "decode_1.csv", "1,2,3\n3,4,5\n");
  expect_dir(dir, EPLB_ESHAPE, "rank 1, column 1 has no expert");

  mkdir_tmp("mie_nocsv", dir, sizeof(dir));
  put_text(dir, "model_gen_config.json", cfg);
  expect_dir(dir, EPLB_EIO, "no {stage}_{rank}.csv");

  mkdir_tmp("mie_cfg", dir, sizeof(dir));
  put_text(dir, "model_gen_config.json", "{\"num_moe_layers\": 2}");
  expect_dir(dir, EPLB_EPARSE, "\"num_of_experts\" is missing");
}

/* A MindIE dump as a series: block b is what was counted since block
 * b - 1, summed over NPUs and stages; the steps add up to the last blocks
 * (what eplb_stats_read reads). */
static void test_mindie_series(void **state) {
  (void)state;
  char dir[600], sub[700];
  mkdir_tmp("mie_series", dir, sizeof(dir));
  const char *cfg = "{\"num_moe_layers\": 2, \"num_of_experts\": 4}";
  put_text(dir, "model_gen_config.json", cfg);
  /* NPU 0 holds experts 0, 1; NPU 1 experts 2, 3; three blocks each. */
  put_text(dir, "decode_0.csv", "1,1\n1,1\n\n5,6\n7,8\n5,9\n7,8\n");
  put_text(dir, "decode_1.csv", "0,0\n0,0\n1,2\n3,4\n2,2\n3,5\n");
  snprintf(sub, sizeof(sub), "%s/prefill", dir);
  mkdir(sub, 0755);
  put_text(sub, "prefill_0.csv", "10,0\n0,10\n10,0\n0,10\n11,1\n1,11\n");
  eplb_series_t s;
  eplb_error_t err;
  assert_int_equal(eplb_series_read(&s, dir, &err), 0);
  assert_int_equal(s.num_steps, 3);
  assert_int_equal(s.num_layers, 2);
  assert_int_equal(s.num_experts, 4);
  const double want[3][8] = {{11, 1, 0, 0, 1, 11, 0, 0},
                             {4, 5, 1, 2, 6, 7, 3, 4},
                             {1, 4, 1, 0, 1, 1, 0, 1}};
  for (int t = 0; t < 3; t++)
    for (int i = 0; i < 8; i++)
      if (s.load[t * 8 + i] != want[t][i])
        fail_msg("step %d load[%d] = %g, want %g", t, i, s.load[t * 8 + i],
                 want[t][i]);
  eplb_stats_t sum, last;
  assert_int_equal(eplb_series_sum(&s, 0.0, &sum, &err), 0);
  assert_int_equal(eplb_stats_read(&last, dir, EPLB_STATS_MINDIE, &err), 0);
  assert_memory_equal(sum.load, last.load, sizeof(double) * 8);
  eplb_stats_cleanup(&sum);
  eplb_stats_cleanup(&last);
  eplb_series_cleanup(&s);

  /* Another number of blocks on one NPU: both files named. */
  put_text(dir, "decode_1.csv", "0,0\n0,0\n1,2\n3,4\n");
  assert_int_equal(eplb_series_read(&s, dir, &err), EPLB_ESHAPE);
  assert_non_null(strstr(err.msg, "blocks but"));
  assert_non_null(strstr(err.msg, "decode_1.csv"));
  assert_null(s.load);
  /* A count that falls: the counters restarted. */
  put_text(dir, "decode_1.csv", "0,0\n0,0\n1,2\n3,4\n1,2\n3,1\n");
  assert_int_equal(eplb_series_read(&s, dir, &err), EPLB_ECOUNT);
  assert_non_null(strstr(err.msg, "decode_1.csv: layer 1, column 1"));
  assert_non_null(strstr(err.msg, "falls from 4 in block 1 to 1 in block 2"));
  assert_null(s.load);
}

/* ---- SGLang and DeepSeek maps -------------------------------------------- */

/* 2 layers (ids 1 and 3), 3 experts, 4 slots on 2 GPUs, expert 0 twice. */
static void make_map(eplb_placement_t *p) {
  static const int32_t rows[8] = {0, 1, 0, 2, 2, 0, 1, 0};
  assert_int_equal(eplb_placement_init(p, 2, 3, 4, 2, NULL), 0);
  memcpy(p->phy2log, rows, sizeof(rows));
  p->layer_ids[0] = 1;
  p->layer_ids[1] = 3;
}

static void test_sglang_roundtrip(void **state) {
  (void)state;
  char dir[600], path[700];
  mkdir_tmp("maps", dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/sg.json", dir);
  eplb_placement_t p, q;
  eplb_error_t err;
  make_map(&p);
  assert_int_equal(eplb_placement_write(&p, path, EPLB_MAP_SGLANG, &err), 0);
  assert_int_equal(eplb_placement_read(&q, path, EPLB_MAP_AUTO, &err), 0);
  /* Rows 0..3: 0 and 2 are dense (contiguous fill), 1 and 3 the map. */
  assert_int_equal(q.num_layers, 4);
  assert_int_equal(q.num_slots, 4);
  assert_int_equal(q.num_gpus, 1);
  static const int32_t fill[4] = {0, 1, 2, 0};
  assert_memory_equal(q.phy2log, fill, sizeof(fill));
  assert_memory_equal(q.phy2log + 4, p.phy2log, 4 * sizeof(int32_t));
  assert_memory_equal(q.phy2log + 12, p.phy2log + 4, 4 * sizeof(int32_t));
  eplb_placement_cleanup(&q);
  eplb_placement_cleanup(&p);
}

static void test_deepseek_roundtrip(void **state) {
  (void)state;
  char dir[600], path[700], *text = NULL;
  mkdir_tmp("maps", dir, sizeof(dir));
  snprintf(path, sizeof(path), "%s/ds.json", dir);
  eplb_placement_t p, q;
  eplb_error_t err;
  make_map(&p);
  assert_int_equal(eplb_placement_write(&p, path, EPLB_MAP_DEEPSEEK, &err), 0);
  assert_int_equal(eplb__read_file(path, &text, NULL, NULL), 0);
  /* Layer 0: expert 0 in slots 0 and 2; expert 1 in slot 1, padded -1. */
  assert_non_null(strstr(text, "[[0, 2], [1, -1], [3, -1]]"));
  assert_non_null(strstr(text, "[2, 1, 1]"));
  free(text);
  assert_int_equal(eplb_placement_read(&q, path, EPLB_MAP_AUTO, &err), 0);
  assert_int_equal(q.num_layers, 2);
  assert_int_equal(q.num_experts, 3);
  assert_memory_equal(q.phy2log, p.phy2log, 8 * sizeof(int32_t));
  eplb_placement_cleanup(&q);
  /* A logcnt that does not count phy2log. */
  put_text(dir, "ds_bad.json", "{\"phy2log\": [[0, 1, 1]], \"logcnt\": [[1, 1]]}");
  snprintf(path, sizeof(path), "%s/ds_bad.json", dir);
  assert_int_equal(eplb_placement_read(&q, path, EPLB_MAP_AUTO, &err), EPLB_EMAP);
  assert_non_null(strstr(err.msg, "\"logcnt\"[0][1]"));
  put_text(dir, "sg_bad.json", "{\"physical_to_logical_map\": [[0, 1], [1]]}");
  snprintf(path, sizeof(path), "%s/sg_bad.json", dir);
  assert_int_equal(eplb_placement_read(&q, path, EPLB_MAP_AUTO, &err), EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "[1] is not an array of 2 slots"));
  put_text(dir, "sg_neg.json", "{\"physical_to_logical_map\": [[0, -1]]}");
  snprintf(path, sizeof(path), "%s/sg_neg.json", dir);
  assert_int_equal(eplb_placement_read(&q, path, EPLB_MAP_AUTO, &err), EPLB_EPARSE);
  assert_non_null(strstr(err.msg, "[0][1]"));
  eplb_placement_cleanup(&p);
  assert_int_equal(eplb_map_format_from_name("sglang"), EPLB_MAP_SGLANG);
  assert_string_equal(eplb_map_format_name(EPLB_MAP_DEEPSEEK), "deepseek");
  assert_int_equal(eplb_stats_format_from_name("trtllm"), EPLB_STATS_TRTLLM);
  assert_string_equal(eplb_stats_format_name(EPLB_STATS_MINDIE), "mindie");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_trtllm_good),
      cmocka_unit_test(test_trtllm_bad),
      cmocka_unit_test(test_trtllm_series),
      cmocka_unit_test(test_mindie_good),
      cmocka_unit_test(test_mindie_bad),
      cmocka_unit_test(test_mindie_series),
      cmocka_unit_test(test_sglang_roundtrip),
      cmocka_unit_test(test_deepseek_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
