/* test_formats_maps.c - the fast map scanners (src/formats/map_fast.c)
 * against the full readers (map_read.c, map_phy2log.c): maps written by
 * Python's json (tests/map_variants.py: many indents, separators and key
 * orders) are read by the fast path and give exactly the placement Python
 * wrote, the same as the full reader's; every unusual input (unknown keys,
 * escapes, duplicate keys, non-integer or out-of-range numbers, unexpected
 * nesting, trailing bytes...) is declined by the fast path, and what the
 * user gets is the full reader's result or error message. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/eplb.h"
#include "formats/formats.h"

#ifndef EPLB_MAP_VARIANTS
#error "EPLB_MAP_VARIANTS (the output of tests/map_variants.py) must be defined"
#endif

/* ---- helpers ---------------------------------------------------------- */

/* Reads a whole file into a malloc'd NUL-terminated buffer; *len its size. */
static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    fail_msg("cannot open %s (run the map_variants_py test first)", path);
  assert_int_equal(fseek(f, 0, SEEK_END), 0);
  long n = ftell(f);
  assert_true(n >= 0);
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
  buf[n] = '\0';
  fclose(f);
  *len = (size_t)n;
  return buf;
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
                      sizeof(int32_t) * (size_t)a->num_layers *
                          (size_t)a->num_slots);
}

/* The placement Python wrote in NAME.expect ("L S G E", ids, rows). */
static void assert_expected(const eplb_placement_t *p, const char *path) {
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  int L, S, G, E, x;
  assert_int_equal(fscanf(f, "%d %d %d %d", &L, &S, &G, &E), 4);
  assert_int_equal(p->num_layers, L);
  assert_int_equal(p->num_slots, S);
  assert_int_equal(p->num_gpus, G);
  assert_int_equal(p->num_experts, E);
  for (int l = 0; l < L; l++) {
    assert_int_equal(fscanf(f, "%d", &x), 1);
    assert_int_equal(p->layer_ids[l], x);
  }
  for (int i = 0; i < L * S; i++) {
    assert_int_equal(fscanf(f, "%d", &x), 1);
    assert_int_equal(p->phy2log[i], x);
  }
  fclose(f);
}

/* The fast scanner for the format AUTO detects in text. */
static int fast_for(eplb_placement_t *p, const char *text, size_t len) {
  if (strstr(text, "\"physical_to_logical_map\"") != NULL ||
      strstr(text, "\"phy2log\"") != NULL)
    return eplb__phy2log_fast(p, text, len);
  return eplb__expert_map_fast(p, text, len);
}

/* ---- Python's maps: the fast path reads them, exactly ------------------ */

/* Reads one file both ways; both must give what Python wrote. */
static void check_python_map(const char *name) {
  char path[1024], expect[1024];
  snprintf(path, sizeof(path), "%s/%s", EPLB_MAP_VARIANTS, name);
  snprintf(expect, sizeof(expect), "%s", path);
  strcpy(expect + strlen(expect) - 4, "expect");
  size_t len = 0;
  char *text = slurp(path, &len);
  eplb_placement_t fast, viafast, full;
  eplb_error_t err;
  if (fast_for(&fast, text, len) != 1)
    fail_msg("the fast scanner declined %s", path);
  if (eplb__placement_read_text(&viafast, path, text, len, EPLB_MAP_AUTO, 1,
                                &err) != 0 ||
      eplb__placement_read_text(&full, path, text, len, EPLB_MAP_AUTO, 0,
                                &err) != 0)
    fail_msg("%s does not read: %s", path, err.msg);
  assert_same_placement(&fast, &full);
  assert_same_placement(&viafast, &full);
  assert_expected(&fast, expect);
  eplb_placement_cleanup(&fast);
  eplb_placement_cleanup(&viafast);
  eplb_placement_cleanup(&full);
  free(text);
}

static void test_python_maps(void **state) {
  (void)state;
  DIR *d = opendir(EPLB_MAP_VARIANTS);
  if (d == NULL)
    fail_msg("no %s: the map_variants_py test writes it", EPLB_MAP_VARIANTS);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    size_t k = strlen(e->d_name);
    if (k > 5 && strcmp(e->d_name + k - 5, ".json") == 0) {
      check_python_map(e->d_name);
      n++;
    }
  }
  closedir(d);
  /* 4 placements x 8 styles x 3 formats. */
  assert_int_equal(n, 96);
}

/* Every kind of JSON white space around every token is still plain. */
static void test_fast_whitespace(void **state) {
  (void)state;
  const char *text =
      "\r\n\t {\t\"layer_list\"\r:\n[ {\"device_list\" :[{\"device_expert\""
      ":[ 1 ,\t0\r\n] ,\"device_id\":1 } ,{ \"device_id\" : 0,"
      "\"device_expert\":[2,0]}],\"layer_id\":\n7,\"device_count\":2}\t],"
      "\n\"moe_layer_count\"\t:1 }\r\n";
  eplb_placement_t a, b;
  eplb_error_t err;
  assert_int_equal(eplb__expert_map_fast(&a, text, strlen(text)), 1);
  assert_int_equal(eplb__placement_read_text(&b, "m.json", text, strlen(text),
                                             EPLB_MAP_AUTO, 0, &err),
                   0);
  assert_same_placement(&a, &b);
  const int32_t want[4] = {2, 0, 1, 0};
  assert_memory_equal(a.phy2log, want, sizeof(want));
  assert_int_equal(a.layer_ids[0], 7);
  eplb_placement_cleanup(&a);
  eplb_placement_cleanup(&b);
}

/* ---- unusual input: declined, and the full reader answers -------------- */

/* A small valid expert map around `dev1` (device 1 of the only layer) with
 * `top` inserted as the first top-level member. */
#define EM(top, dev1)                                                          \
  "{" top "\"moe_layer_count\": 1, \"layer_list\": [{\"layer_id\": 0, "        \
  "\"device_count\": 2, \"device_list\": [{\"device_id\": 0, "                 \
  "\"device_expert\": [0, 1]}, " dev1 "]}]}"
#define DEV1 "{\"device_id\": 1, \"device_expert\": [2, 0]}"

typedef struct {
  const char *text;
  int full_ok; /* the full reader accepts it (else: an error) */
} unusual_t;

static const unusual_t unusual[] = {
    /* valid, but not plain: the full reader reads them */
    {EM("\"name\": \"dsv3\", ", DEV1), 1},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, 0], \"x\": null}"), 1},
    {EM("", "{\"device_\\u0069d\": 1, \"device_expert\": [2, 0]}"), 1},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2.0, 0]}"), 1},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2e0, 0]}"), 1},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, -0]}"), 1},
    {EM("", "{\"device_id\": 1.0, \"device_expert\": [2, 0]}"), 1},
    {"\xEF\xBB\xBF" EM("", DEV1), 0}, /* read as YAML: an error */
    {EM("", DEV1) "\f", 1},
    /* errors: the user sees the full reader's message */
    {EM("", "{\"device_id\": 1, \"device_id\": 1, \"device_expert\": [2, 0]}"),
     0},
    {EM("\"moe_layer_count\": 1, ", DEV1), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, 65536]}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, -1]}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, 0.5]}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, 1e400]}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, 01]}"),
     1}, /* cJSON reads 01 */
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, +1]}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, 99999999999999999999]}"),
     0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [[2, 0]]}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": \"2, 0\"}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, 0, 1]}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": []}"), 0},
    {EM("", "{\"device_id\": 0, \"device_expert\": [2, 0]}"), 0},
    {EM("", "{\"device_id\": 2, \"device_expert\": [2, 0]}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [3, 0]}"), 0},
    {EM("", "{\"device_id\": 1}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2, 0],}"), 0},
    {EM("", "{\"device_id\": 1, \"device_expert\": [2 0]}"), 0},
    {EM("", DEV1) " x", 0},
    {EM("", DEV1) "{}", 0},
    {"{\"moe_layer_count\": 1, \"layer_list\": [{\"layer_id\": 0, "
     "\"device_count\": 2, \"device_list\": [{\"device_id\": 0, "
     "\"device_expert\": [0, 1]}]}]}",
     0},
    {"{\"moe_layer_count\": 2, \"layer_list\": [{\"layer_id\": 0, "
     "\"device_count\": 1, \"device_list\": [{\"device_id\": 0, "
     "\"device_expert\": [0]}]}]}",
     0},
    {"{\"moe_layer_count\": 2, \"layer_list\": [{\"layer_id\": 4, "
     "\"device_count\": 1, \"device_list\": [{\"device_id\": 0, "
     "\"device_expert\": [0]}]}, {\"layer_id\": 4, \"device_count\": 1, "
     "\"device_list\": [{\"device_id\": 0, \"device_expert\": [0]}]}]}",
     0},
    {"{\"moe_layer_count\": 1, \"layer_list\": [{\"layer_id\": -1, "
     "\"device_count\": 1, \"device_list\": [{\"device_id\": 0, "
     "\"device_expert\": [0]}]}]}",
     0},
    {"{\"moe_layer_count\": 1, \"layer_list\": []}", 0},
    {"{\"moe_layer_count\": 0, \"layer_list\": []}", 0},
    {"{}", 0},
    {"[]", 0},
    {"{\"moe_layer_count\": 1, \"layer_list\": [{\"layer_id\": 0, ", 0},
    /* SGLang and DeepSeek */
    {"{\"physical_to_logical_map\": [[0, 1], [1, 0]], \"v\": 2}", 1},
    {"{\"physical_to_logical_map\": [[0, 1], [1, 0]], \"phy2log\": [[0]]}", 1},
    {"{\"physical_to_logical_map\": [[0, 1], [1.0, 0]]}", 1},
    {"{\"phy2log\": [[0, 1]], \"logcnt\": [[1, 1], \"more\"]}", 1},
    {"{\"phy2log\": [[0, 1]], \"logcnt\": [[1, 1, 0, 0.0]]}", 1},
    {"{\"phy2log\": [[0, 1]], \"logcnt\": [[1, 1], []]}", 1},
    {"{\"phy2log\": [[0, 1]], \"log2phy\": [[[0], [1.5]]]}", 1},
    {"{\"phy2log\": [[0, 1]], \"log2phy\": [[[0], [- 1]]]}", 0},
    {"{\"phy2log\": [[0, 1]], \"logcnt\": [[1, 2]]}", 0},
    {"{\"phy2log\": [[0, 1]], \"logcnt\": [[1, 1, 1]]}", 0},
    {"{\"phy2log\": [[0, 1]], \"logcnt\": []}", 0},
    {"{\"phy2log\": [[0, 1], [0, 1]], \"logcnt\": [[1, 1]]}", 0},
    {"{\"physical_to_logical_map\": [[0, 1], [1]]}", 0},
    {"{\"physical_to_logical_map\": [[0, 1], [1, -1]]}", 0},
    {"{\"physical_to_logical_map\": [[0, 2], [1, 0]]}", 0},
    {"{\"physical_to_logical_map\": [[0, 1], [1, 0]], "
     "\"physical_to_logical_map\": [[0, 1], [1, 0]]}",
     0},
    {"{\"physical_to_logical_map\": []}", 0},
    {"{\"physical_to_logical_map\": [[]]}", 0},
    {"{\"physical_to_logical_map\": [0, 1]}", 0},
    {"{\"physical_to_logical_map\": [[0, 1]]} ]", 0},
    {"[{\"phy2log\": [[0, 1]]}]", 0},
};

/* The fast path declines text[len]; the read gives the full reader's
 * answer: its placement (full_ok), or its error message. */
static void check_unusual(const char *text, size_t len, int full_ok) {
  eplb_placement_t f, a, b;
  eplb_error_t ea, eb;
  eplb_error_clear(&ea);
  eplb_error_clear(&eb);
  if (fast_for(&f, text, len) != 0)
    fail_msg("the fast scanner accepted %s", text);
  assert_null(f.phy2log);
  int ra =
      eplb__placement_read_text(&a, "m.json", text, len, EPLB_MAP_AUTO, 1, &ea);
  int rb =
      eplb__placement_read_text(&b, "m.json", text, len, EPLB_MAP_AUTO, 0, &eb);
  if ((ra == 0) != full_ok || ra != rb)
    fail_msg("%s: read %d (%s), full reader %d (%s)", text, ra, ea.msg, rb,
             eb.msg);
  if (ra == 0) {
    assert_same_placement(&a, &b);
  } else {
    assert_string_equal(ea.msg, eb.msg);
    assert_non_null(strstr(ea.msg, "m.json"));
  }
  eplb_placement_cleanup(&a);
  eplb_placement_cleanup(&b);
}

static void test_fast_declines_unusual(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(unusual) / sizeof(unusual[0]); i++)
    check_unusual(unusual[i].text, strlen(unusual[i].text), unusual[i].full_ok);
  /* A NUL byte inside the file (after a whole map). */
  static const char nul[] = EM("", DEV1) "\0 ";
  check_unusual(nul, sizeof(nul) - 1, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_python_maps),
      cmocka_unit_test(test_fast_whitespace),
      cmocka_unit_test(test_fast_declines_unusual),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
