/* formats/trtllm_stats.c - TensorRT-LLM's expert statistics dump: a
 * directory with meta_info.json and one rank{r}.safetensors per rank.
 *
 * TensorRT-LLM (EXPERT_STATISTIC_PATH) writes, per rank, a safetensors file
 * whose keys "{iter}_{layer}" hold a 1-D int64 (older: int32) tensor [E]:
 * the tokens that rank routed to each expert in that iteration and decoder
 * layer.  We sum over ranks and the selected iterations; the decoder-layer
 * ids (DeepSeek-R1: 3..60) become the histogram's layer_ids, in increasing
 * order.  The safetensors header is parsed by formats/safetensors.c (every
 * length and offset checked against the file, a tensor named twice
 * refused); here each tensor must be "{iter}_{layer}" of dtype I64 or I32
 * and shape [E]. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb/series.h"
#include "formats/formats.h"
#include "formats/safetensors.h"
#include "util/fileio.h"

/* What the reader carries from file to file. */
typedef struct {
  const char *dir;
  int32_t E;
  int64_t it_min, it_max;          /* selected iterations, inclusive */
  double *rows[EPLB_MAX_LAYERS];   /* [layer id] -> [E] sums, lazily */
  int64_t seen_min, seen_max;      /* iterations present (any) */
  int keep_keys;                   /* series, first pass: */
  int64_t *keys;                   /* summed tensors' it x MAX_LAYERS + layer */
  size_t num_keys, cap_keys;
  eplb_series_t *series;           /* second pass of a series read, or NULL */
  int32_t row_of[EPLB_MAX_LAYERS]; /* series: layer id -> row */
  unsigned char *present;          /* series: [T * L] keys seen */
} trt_t;

/* meta_info.json: {"num_experts": E, ...}. */
static int read_meta(trt_t *t, eplb_error_t *err) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/meta_info.json", t->dir);
  char *text = NULL;
  size_t len = 0;
  cJSON *root = NULL;
  int rc = eplb__read_file(path, &text, &len, err);
  if (rc == 0)
    rc = eplb__json_parse(path, text, len, &root, err);
  if (rc == 0)
    rc = eplb__json_unique_keys(path, root, err);
  if (rc == 0) {
    const cJSON *ne = cJSON_GetObjectItemCaseSensitive(root, "num_experts");
    int64_t v = 0;
    const char *why =
        ne ? eplb__json_int(ne, 1, EPLB_MAX_EXPERTS, &v) : "is missing";
    if (why != NULL)
      rc = eplb_error_set(err, EPLB_EPARSE,
                          "%s: \"num_experts\" %s; expected an integer in "
                          "1..%d",
                          path, why, EPLB_MAX_EXPERTS);
    t->E = (int32_t)v;
  }
  cJSON_Delete(root);
  free(text);
  return rc;
}

/* Reads the little-endian uint64 at p. */
static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

/* Splits "{iter}_{layer}" into its numbers.  Returns 0 or -1. */
static int split_key(const char *key, int32_t *iter, int32_t *layer) {
  const char *us = strchr(key, '_');
  char head[16];
  if (us == NULL || us == key || (size_t)(us - key) >= sizeof(head))
    return -1;
  memcpy(head, key, (size_t)(us - key));
  head[us - key] = '\0';
  if (eplb__parse_index(head, EPLB_MAX_ITER, iter) != 0)
    return -1;
  return eplb__parse_index(us + 1, EPLB_MAX_LAYERS - 1, layer) == 0 ? 0 : -1;
}

/* Where one tensor is and what it holds, checked against the file. */
typedef struct {
  const char *path, *key;
  int width; /* 8 (I64) or 4 (I32) */
  const unsigned char *data;
} tensor_t;

/* Checks dtype and shape [E] of one parsed tensor (its offsets were
 * checked by the parser); fills tn->width and tn->data from the file's
 * bytes `file`. */
static int check_tensor(const trt_t *t, const eplb__st_tensor_t *v,
                        tensor_t *tn, const unsigned char *file,
                        eplb_error_t *err) {
  if (v->dtype != EPLB_ST_I64 && v->dtype != EPLB_ST_I32)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: key \"%s\": dtype \"%s\"; "
                          "expected \"I64\" or \"I32\" (token counts)",
                          tn->path, tn->key, eplb__st_dtype_name(v->dtype));
  tn->width = eplb__st_dtype_size(v->dtype);
  if (v->ndims != 1 || v->shape[0] != t->E)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: key \"%s\": shape is not "
                          "[%d]; meta_info.json says num_experts = %d",
                          tn->path, tn->key, (int)t->E, (int)t->E);
  tn->data = file + v->offset;
  return 0;
}

/* The sums one tensor of (iteration it, layer) goes to. */
static double *target_row(trt_t *t, int32_t it, int32_t layer,
                          eplb_error_t *err) {
  eplb_series_t *s = t->series;
  if (s != NULL) {
    size_t i = (size_t)(it - t->it_min) * (size_t)s->num_layers +
               (size_t)t->row_of[layer];
    t->present[i] = 1;
    return s->load + i * (size_t)s->num_experts;
  }
  if (t->rows[layer] == NULL) {
    t->rows[layer] = calloc((size_t)t->E, sizeof(double));
    if (t->rows[layer] == NULL)
      eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  return t->rows[layer];
}

/* Adds one checked tensor of iteration `it` to the sums of `layer`. */
static int add_tensor(trt_t *t, const tensor_t *tn, int32_t it, int32_t layer,
                      eplb_error_t *err) {
  double *row = target_row(t, it, layer, err);
  if (row == NULL)
    return EPLB_ENOMEM;
  for (int32_t x = 0; x < t->E; x++) {
    const unsigned char *p = tn->data + (size_t)x * (size_t)tn->width;
    int64_t v = tn->width == 8
                    ? (int64_t)le64(p)
                    : (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 |
                                (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    /* Checked before adding, in exact terms: an int64 above 2^53 does
     * not convert exactly, and a sum that passes 2^53 by one rounds back
     * below it. */
    if (v < 0 || v > (int64_t)1 << 53 || (double)v > EPLB_MAX_COUNT - row[x])
      return eplb_error_set(err, EPLB_ECOUNT,
                            "%s: key \"%s\", expert %d: "
                            "count %lld is %s",
                            tn->path, tn->key, (int)x, (long long)v,
                            v < 0 ? "negative"
                                  : "too large (the sum passes 2^53)");
    row[x] += (double)v;
  }
  return 0;
}

/* Series, first pass: keeps the key (it, layer) of a summed tensor. */
static int keep_key(trt_t *t, int32_t it, int32_t layer, eplb_error_t *err) {
  if (t->num_keys == t->cap_keys) {
    size_t cap = t->cap_keys ? 2 * t->cap_keys : 256;
    int64_t *more = realloc(t->keys, sizeof(*more) * cap);
    if (more == NULL)
      return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    t->keys = more;
    t->cap_keys = cap;
  }
  t->keys[t->num_keys++] = (int64_t)it * EPLB_MAX_LAYERS + layer;
  return 0;
}

/* One header entry: key check, iteration filter, tensor check, sum. */
static int read_entry(trt_t *t, const char *path, const eplb__st_tensor_t *v,
                      const unsigned char *file, eplb_error_t *err) {
  int32_t it = 0, layer = 0;
  if (split_key(v->name, &it, &layer) != 0)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: key \"%.60s\" is not "
                          "\"{iteration}_{layer}\" (iteration 0..%d, layer "
                          "0..%d)",
                          path, v->name, EPLB_MAX_ITER, EPLB_MAX_LAYERS - 1);
  if (t->seen_min < 0 || it < t->seen_min)
    t->seen_min = it;
  if (it > t->seen_max)
    t->seen_max = it;
  tensor_t tn = {.path = path, .key = v->name};
  int rc = check_tensor(t, v, &tn, file, err);
  if (rc || it < t->it_min || it > t->it_max)
    return rc;
  rc = add_tensor(t, &tn, it, layer, err);
  if (rc == 0 && t->keep_keys)
    rc = keep_key(t, it, layer, err);
  return rc;
}

/* One rank{r}.safetensors. */
static int read_rank(trt_t *t, int32_t r, eplb_error_t *err) {
  char path[4096];
  snprintf(path, sizeof(path), "%s/rank%d.safetensors", t->dir, (int)r);
  char *text = NULL;
  size_t len = 0;
  eplb__st_header_t h;
  int rc = eplb__read_file(path, &text, &len, err);
  if (rc)
    return rc;
  const unsigned char *file = (const unsigned char *)text;
  rc = eplb__st_parse(path, file, len, len, &h, err);
  for (int32_t i = 0; rc == 0 && i < h.num_tensors; i++)
    rc = read_entry(t, path, &h.tensors[i], file, err);
  eplb__st_header_free(&h);
  free(text);
  return rc;
}

/* Counts the rank{r}.safetensors files: they must be rank0..rank{R-1}. */
static int count_ranks(const char *dir, int32_t *R, eplb_error_t *err) {
  DIR *d = opendir(dir);
  if (d == NULL)
    return eplb_error_set(err, EPLB_EIO, "%s: cannot open the directory", dir);
  int32_t n = 0, max = -1;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    const char *nm = de->d_name;
    size_t k = strlen(nm);
    char num[16];
    int32_t r;
    if (k <= 16 || strncmp(nm, "rank", 4) != 0 ||
        strcmp(nm + k - 12, ".safetensors") != 0 || k - 16 >= sizeof(num))
      continue;
    memcpy(num, nm + 4, k - 16);
    num[k - 16] = '\0';
    if (eplb__parse_index(num, 1 << 20, &r) != 0)
      continue;
    n++;
    if (r > max)
      max = r;
  }
  closedir(d);
  if (n == 0)
    return eplb_error_set(err, EPLB_EIO,
                          "%s: no rank{r}.safetensors file "
                          "(TensorRT-LLM writes rank0.safetensors, ...)",
                          dir);
  if (n != max + 1)
    return eplb_error_set(err, EPLB_EIO,
                          "%s: %d rank{r}.safetensors files "
                          "but ranks go up to %d: a rank's file is missing",
                          dir, (int)n, (int)max);
  *R = n;
  return 0;
}

/* Moves the summed rows into *out, layers in increasing id order. */
static int collect(trt_t *t, eplb_stats_t *out, eplb_error_t *err) {
  int32_t L = 0;
  for (int32_t i = 0; i < EPLB_MAX_LAYERS; i++)
    L += t->rows[i] != NULL;
  if (L == 0 && t->seen_min < 0)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: the dump holds no tensor (its "
                          "rank{r}.safetensors files have no "
                          "\"{iteration}_{layer}\" key)",
                          t->dir);
  if (L == 0)
    return eplb_error_set(err, EPLB_EARG,
                          "%s: no iteration in %lld..%lld; "
                          "the dump holds iterations %lld..%lld",
                          t->dir, (long long)t->it_min, (long long)t->it_max,
                          (long long)t->seen_min, (long long)t->seen_max);
  int rc = eplb_stats_init(out, L, t->E, err);
  for (int32_t i = 0, l = 0; rc == 0 && i < EPLB_MAX_LAYERS; i++) {
    if (t->rows[i] == NULL)
      continue;
    out->layer_ids[l] = i;
    memcpy(out->load + (size_t)l * (size_t)t->E, t->rows[i],
           sizeof(double) * (size_t)t->E);
    l++;
  }
  return rc;
}

/* Sets up a reader of `dir` with the iteration range of opts. */
static trt_t *trt_new(const char *dir, const eplb_stats_read_opts_t *opts,
                      eplb_error_t *err) {
  trt_t *t = calloc(1, sizeof(*t));
  if (t == NULL) {
    eplb_error_set(err, EPLB_ENOMEM, "out of memory");
    return NULL;
  }
  t->dir = dir;
  t->it_min = opts && opts->iter_min >= 0 ? opts->iter_min : 0;
  t->it_max = opts && opts->iter_max >= 0 ? opts->iter_max : INT64_MAX;
  t->seen_min = -1;
  t->seen_max = -1;
  return t;
}

/* Reads meta_info.json and every rank file into t. */
static int trt_run(trt_t *t, eplb_error_t *err) {
  int32_t R = 0;
  int rc = read_meta(t, err);
  if (rc == 0)
    rc = count_ranks(t->dir, &R, err);
  for (int32_t r = 0; rc == 0 && r < R; r++)
    rc = read_rank(t, r, err);
  return rc;
}

/* Frees t and its sums. */
static void trt_free(trt_t *t) {
  for (int32_t i = 0; i < EPLB_MAX_LAYERS; i++)
    free(t->rows[i]);
  free(t->present);
  free(t->keys);
  free(t);
}

int eplb__trtllm_read(eplb_stats_t *out, const char *dir,
                      const eplb_stats_read_opts_t *opts, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  trt_t *t = trt_new(dir, opts, err);
  if (t == NULL)
    return EPLB_ENOMEM;
  int rc = trt_run(t, err);
  if (rc == 0)
    rc = collect(t, out, err);
  trt_free(t);
  if (rc)
    eplb_stats_cleanup(out);
  return rc;
}

/* Series: iteration `it` lacks layer id `layer` in every rank. */
static int gap(const trt_t *t, int64_t it, int32_t layer, eplb_error_t *err) {
  return eplb_error_set(err, EPLB_ESHAPE,
                        "%s: no rank has key \"%lld_%d\": iteration %lld "
                        "lacks layer %d that other iterations have",
                        t->dir, (long long)it, (int)layer, (long long)it,
                        (int)layer);
}

/* Series: every (iteration, layer) of the range must be in some rank. */
static int check_present(const trt_t *t, eplb_error_t *err) {
  const eplb_series_t *s = t->series;
  for (int32_t i = 0; i < s->num_steps; i++)
    for (int32_t l = 0; l < s->num_layers; l++)
      if (!t->present[(size_t)i * (size_t)s->num_layers + (size_t)l])
        return gap(t, t->it_min + i, s->layer_ids[l], err);
  return 0;
}

static int by_key(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

/* Series, after the first pass: the same check on the keys it kept, before
 * the T x L x E series is allocated (iteration ids a million apart fit in a
 * few kilobytes: the series would be gigabytes).  Stops at the first gap,
 * so it walks no more (iteration, layer)s than there are keys.  A span
 * longer than any series is left to eplb_series_init to refuse as such
 * (fewer steps are needed, whatever the dump holds). */
static int check_keys(trt_t *t, const eplb_stats_t *sums, int64_t lo,
                      int64_t hi, eplb_error_t *err) {
  if (hi - lo + 1 > EPLB_MAX_STEPS)
    return 0;
  if (t->num_keys > 0)
    qsort(t->keys, t->num_keys, sizeof(*t->keys), by_key);
  size_t j = 0;
  for (int64_t it = lo; it <= hi; it++)
    for (int32_t l = 0; l < sums->num_layers; l++) {
      int64_t want = it * EPLB_MAX_LAYERS + sums->layer_ids[l];
      while (j < t->num_keys && t->keys[j] < want)
        j++;
      if (j == t->num_keys || t->keys[j] != want)
        return gap(t, it, sums->layer_ids[l], err);
    }
  return 0;
}

/* Second pass: allocates the T x L x E series for the iterations the first
 * pass found in range (sums: *sums) and reads again into it. */
static int read_series_pass(eplb_series_t *out, const char *dir,
                            const eplb_stats_t *sums, int64_t lo, int64_t hi,
                            eplb_error_t *err) {
  eplb_stats_read_opts_t o = {lo, hi};
  trt_t *t = trt_new(dir, &o, err);
  if (t == NULL)
    return EPLB_ENOMEM;
  int32_t L = sums->num_layers;
  int rc =
      eplb_series_init(out, (int32_t)(hi - lo + 1), L, sums->num_experts, err);
  if (rc == 0 &&
      (t->present = calloc((size_t)out->num_steps * (size_t)L, 1)) == NULL)
    rc = eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t l = 0; rc == 0 && l < L; l++) {
    out->layer_ids[l] = sums->layer_ids[l];
    t->row_of[sums->layer_ids[l]] = l;
  }
  t->series = out;
  if (rc == 0)
    rc = trt_run(t, err);
  if (rc == 0)
    rc = check_present(t, err);
  trt_free(t);
  return rc;
}

int eplb_stats_read_trtllm_series(struct eplb_series_s *out, const char *dir,
                                  const eplb_stats_read_opts_t *opts,
                                  eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  eplb_stats_t sums;
  trt_t *t = trt_new(dir, opts, err);
  if (t == NULL)
    return EPLB_ENOMEM;
  t->keep_keys = 1;
  int rc = trt_run(t, err);
  int64_t lo = t->it_min > t->seen_min ? t->it_min : t->seen_min;
  int64_t hi = t->it_max < t->seen_max ? t->it_max : t->seen_max;
  if (rc == 0)
    rc = collect(t, &sums, err); /* the layers, and "no iteration in" */
  if (rc == 0 && (rc = check_keys(t, &sums, lo, hi, err)) != 0)
    eplb_stats_cleanup(&sums);
  trt_free(t);
  if (rc)
    return rc;
  rc = read_series_pass(out, dir, &sums, lo, hi, err);
  eplb_stats_cleanup(&sums);
  if (rc)
    eplb_series_cleanup(out);
  return rc;
}
