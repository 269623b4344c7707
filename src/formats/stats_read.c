/* formats/stats_read.c - statistics readers: MindSpeed-RL and SGLang JSON
 * in, one eplb_stats_t out (the "collect" stage's file adapters).
 *
 * MindSpeed-RL writes {"layer": {"expert": count}} (token_collects_all.json,
 * or one eplb_token_collects_{rank}.json per rank); SGLang writes
 * {"logical_count": [L][E]} or, from its recorder, [steps][L][E].  Both
 * come from other programs, so every reader is strict and says exactly where
 * a file is wrong: the file, the key or index path, and why.  Counts must be
 * finite, non-negative and at most 2^53 so that sums stay exact.
 *
 * A well-formed file is read by a fast scanner (fast.c) straight into the
 * histogram.  Anything else is parsed with cJSON and checked here, which is
 * where every error message comes from; children are walked in order,
 * never looked up by index, so that read is linear in the file too. */
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "eplb/series.h"
#include "eplb/stats.h"
#include "formats/formats.h"
#include "util/fileio.h"

int eplb_stats_format_from_name(const char *name) {
  if (name == NULL)
    return -1;
  if (strcmp(name, "auto") == 0)
    return EPLB_STATS_AUTO;
  if (strcmp(name, "mindspeed") == 0)
    return EPLB_STATS_MINDSPEED;
  if (strcmp(name, "sglang") == 0)
    return EPLB_STATS_SGLANG;
  if (strcmp(name, "trtllm") == 0)
    return EPLB_STATS_TRTLLM;
  if (strcmp(name, "mindie") == 0)
    return EPLB_STATS_MINDIE;
  return -1;
}

const char *eplb_stats_format_name(eplb_stats_format_t format) {
  switch (format) {
  case EPLB_STATS_AUTO: return "auto";
  case EPLB_STATS_MINDSPEED: return "mindspeed";
  case EPLB_STATS_SGLANG: return "sglang";
  case EPLB_STATS_TRTLLM: return "trtllm";
  case EPLB_STATS_MINDIE: return "mindie";
  }
  return "unknown";
}

/* ---- MindSpeed-RL: {"layer": {"expert": count}} ------------------------ */

/* Puts the top-level children of `root` (L of them) at layers[key]: every
 * key must be a decimal index 0..L-1, once, holding an object. */
static int index_layers(const cJSON *root, const char *path, int32_t L,
                        const cJSON **layers, eplb_error_t *err) {
  const cJSON *c;
  cJSON_ArrayForEach(c, root) {
    int32_t k = 0;
    int r = eplb__parse_index(c->string, L - 1, &k);
    if (r == -1)
      return eplb_error_set(
          err, EPLB_EPARSE,
          "%s: top-level key \"%.40s\" is not a layer index (0, 1, 2, ...); "
          "expected MindSpeed-RL's {\"layer\": {\"expert\": count}}%s",
          path, c->string,
          strcmp(c->string, "logical_count") == 0
              ? "; this file is SGLang's format: use --format sglang or auto"
              : "");
    if (r == -2)
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: layer \"%.40s\": the file has %d layers, so "
                            "the layer keys must be 0..%d; is a layer missing?",
                            path, c->string, (int)L, (int)L - 1);
    if (layers[k] != NULL)
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: layer \"%d\" appears twice; each layer must "
                            "appear once",
                            path, (int)k);
    if (!cJSON_IsObject(c))
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: layer \"%d\" is %s; expected an object "
                            "{\"expert\": count}",
                            path, (int)k, eplb__json_kind(c));
    layers[k] = c;
  }
  return 0;
}

/* Reads layer l (object `obj`) into row l of out; seen[E] is scratch. */
static int read_ms_layer(eplb_stats_t *out, const char *path, int32_t l,
                         const cJSON *obj, unsigned char *seen,
                         eplb_error_t *err) {
  int32_t E = out->num_experts;
  int n = cJSON_GetArraySize(obj);
  if (n != E)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: layer \"%d\" has %d experts but layer \"0\" has "
                          "%d; every layer must list the same experts",
                          path, (int)l, n, (int)E);
  memset(seen, 0, (size_t)E);
  const cJSON *c;
  cJSON_ArrayForEach(c, obj) {
    int32_t e = 0;
    int r = eplb__parse_index(c->string, E - 1, &e);
    if (r == -1)
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: layer \"%d\": key \"%.40s\" is not an expert "
                            "index (0, 1, 2, ...)",
                            path, (int)l, c->string);
    if (r == -2)
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: layer \"%d\", expert \"%.40s\": the layer has "
                            "%d experts, so the expert keys must be 0..%d; is "
                            "an expert missing?",
                            path, (int)l, c->string, (int)E, (int)E - 1);
    if (seen[e])
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: layer \"%d\", expert \"%d\" appears twice; "
                            "each expert must appear once per layer",
                            path, (int)l, (int)e);
    if (!cJSON_IsNumber(c))
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: layer \"%d\", expert \"%d\": the count is %s, "
                            "not a number",
                            path, (int)l, (int)e, eplb__json_kind(c));
    double x = c->valuedouble;
    if (!(x >= 0.0 && x <= EPLB_MAX_COUNT)) { /* also NaN */
      char where[64];
      snprintf(where, sizeof(where), "layer \"%d\", expert \"%d\"", (int)l,
               (int)e);
      return eplb__check_count(x, path, where, err);
    }
    out->load[(size_t)l * (size_t)E + (size_t)e] = c->valuedouble;
    seen[e] = 1;
  }
  return 0;
}

/* The number of experts, from layer "0" (which index_layers found). */
static int ms_num_experts(const cJSON *layer0, const char *path, int32_t *E,
                          eplb_error_t *err) {
  int n = cJSON_GetArraySize(layer0);
  if (n < 1)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: layer \"0\" is empty; expected {\"expert\": "
                          "count} for every expert",
                          path);
  if (n > EPLB_MAX_EXPERTS)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: layer \"0\" has %d experts, more than the %d "
                          "eplb supports",
                          path, n, EPLB_MAX_EXPERTS);
  *E = n;
  return 0;
}

/* Reads MindSpeed-RL statistics from the parsed `root` into *out (empty on
 * failure). */
static int read_mindspeed(eplb_stats_t *out, const char *path,
                          const cJSON *root, eplb_error_t *err) {
  if (!cJSON_IsObject(root))
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: the top level is %s; expected MindSpeed-RL's "
                          "object {\"layer\": {\"expert\": count}}",
                          path, eplb__json_kind(root));
  int L = cJSON_GetArraySize(root);
  if (L < 1)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: the top-level object is empty; expected "
                          "{\"layer\": {\"expert\": count}}",
                          path);
  if (L > EPLB_MAX_LAYERS)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: %d layers, more than the %d eplb supports", path,
                          L, EPLB_MAX_LAYERS);
  const cJSON **layers = calloc((size_t)L, sizeof(*layers));
  unsigned char *seen = NULL;
  int32_t E = 0;
  if (layers == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", path);
  int rc = index_layers(root, path, L, layers, err);
  if (rc == 0)
    rc = ms_num_experts(layers[0], path, &E, err);
  if (rc == 0)
    rc = eplb_stats_init(out, L, E, err);
  if (rc)
    goto done;
  seen = malloc((size_t)E);
  if (seen == NULL) {
    rc = eplb_error_set(err, EPLB_ENOMEM, "%s: out of memory", path);
    goto done;
  }
  for (int32_t l = 0; l < L && rc == 0; l++)
    rc = read_ms_layer(out, path, l, layers[l], seen, err);
done:
  free(seen);
  free(layers);
  if (rc)
    eplb_stats_cleanup(out);
  return rc;
}

/* ---- SGLang: {"logical_count": [L][E]} or [steps][L][E] ---------------- */

typedef struct {
  const char *path;
  int three; /* 1: [steps][L][E]; 0: [L][E] */
  int32_t T, L, E;
} sg_shape_t;

/* Learns the shape from the first step's first row. */
static int sg_shape(const cJSON *lc, sg_shape_t *sh, eplb_error_t *err) {
  const char *path = sh->path;
  if (!cJSON_IsArray(lc) || lc->child == NULL)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: \"logical_count\" is %s%s; expected [layers]"
                          "[experts] or [steps][layers][experts]",
                          path, eplb__json_kind(lc),
                          cJSON_IsArray(lc) ? " (empty)" : "");
  const cJSON *first = lc->child;
  if (!cJSON_IsArray(first) || first->child == NULL)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: logical_count[0] is %s%s; expected an array of "
                          "experts' counts or of layers",
                          path, eplb__json_kind(first),
                          cJSON_IsArray(first) ? " (empty)" : "");
  sh->three = cJSON_IsArray(first->child);
  const cJSON *step0 = sh->three ? first : lc;
  const cJSON *row0 = step0->child;
  int T = sh->three ? cJSON_GetArraySize(lc) : 1;
  int L = cJSON_GetArraySize(step0), E = cJSON_GetArraySize(row0);
  if (E < 1)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: logical_count%s[0] is %s; expected the counts "
                          "of every expert",
                          path, sh->three ? "[0]" : "",
                          cJSON_IsArray(row0) ? "empty"
                                              : eplb__json_kind(row0));
  if (L > EPLB_MAX_LAYERS || E > EPLB_MAX_EXPERTS)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: logical_count is %d layers x %d experts, more "
                          "than the %d x %d eplb supports",
                          path, L, E, EPLB_MAX_LAYERS, EPLB_MAX_EXPERTS);
  sh->T = T;
  sh->L = L;
  sh->E = E;
  return 0;
}

/* The error for value v at <at>[e]: not a number, a bad count, or a sum
 * over the steps above 2^53 (prev: the sum of the steps before).
 * (Messages are built only on failure.) */
static int sg_bad_value(const sg_shape_t *sh, const char *at, int32_t e,
                        const cJSON *v, double prev, eplb_error_t *err) {
  char where[96];
  snprintf(where, sizeof(where), "%s[%d]", at, (int)e);
  if (!cJSON_IsNumber(v))
    return eplb_error_set(err, EPLB_EPARSE, "%s: %s is %s, not a number",
                          sh->path, where, eplb__json_kind(v));
  int rc = eplb__check_count(v->valuedouble, sh->path, where, err);
  if (rc)
    return rc;
  return eplb_error_set(err, EPLB_ECOUNT,
                        "%s: %s: the sum over the steps (%.17g + %.17g) "
                        "exceeds 2^53, the largest count eplb sums exactly",
                        sh->path, where, prev, v->valuedouble);
}

/* Adds one row (`row`, at index path `at`) to row l of out. */
static int sg_add_row(eplb_stats_t *out, const sg_shape_t *sh, int32_t l,
                      const cJSON *row, const char *at, eplb_error_t *err) {
  int32_t E = sh->E;
  if (!cJSON_IsArray(row))
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: %s is %s; expected an array of the %d experts' "
                          "counts; the array is ragged",
                          sh->path, at, eplb__json_kind(row), (int)E);
  if (cJSON_GetArraySize(row) != E)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: %s holds %d counts but the first row holds %d; "
                          "the array is ragged",
                          sh->path, at, cJSON_GetArraySize(row), (int)E);
  double *dst = out->load + (size_t)l * (size_t)E;
  int32_t e = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, row) {
    double x = cJSON_IsNumber(v) ? v->valuedouble : -1.0;
    /* x <= MAX - dst[e], not dst[e] + x <= MAX: the rounded sum of
     * 2^53 - 1 and 2 is 2^53 (for integers the difference is exact). */
    if (!(x >= 0.0 && x <= EPLB_MAX_COUNT - dst[e])) /* also NaN */
      return sg_bad_value(sh, at, e, v, dst[e], err);
    dst[e++] += x;
  }
  return 0;
}

/* Adds step t (`step`: [L][E]) to out. */
static int sg_add_step(eplb_stats_t *out, const sg_shape_t *sh, int32_t t,
                       const cJSON *step, eplb_error_t *err) {
  char at[64];
  if (sh->three)
    snprintf(at, sizeof(at), "logical_count[%d]", (int)t);
  else
    snprintf(at, sizeof(at), "logical_count");
  if (!cJSON_IsArray(step))
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: %s is %s; expected an array of %d layers; the "
                          "array is ragged",
                          sh->path, at, eplb__json_kind(step), (int)sh->L);
  if (cJSON_GetArraySize(step) != sh->L)
    return eplb_error_set(err, EPLB_ESHAPE,
                          "%s: %s holds %d layers but the first step holds %d; "
                          "the array is ragged",
                          sh->path, at, cJSON_GetArraySize(step), (int)sh->L);
  int32_t l = 0;
  const cJSON *row;
  cJSON_ArrayForEach(row, step) {
    char rat[80];
    snprintf(rat, sizeof(rat), "%s[%d]", at, (int)l);
    int rc = sg_add_row(out, sh, l, row, rat, err);
    if (rc)
      return rc;
    l++;
  }
  return 0;
}

/* Reads SGLang statistics from the parsed `root` into *out (empty on
 * failure); steps are summed, dense_rows = 1. */
static int read_sglang(eplb_stats_t *out, const char *path, const cJSON *root,
                       eplb_error_t *err) {
  if (!cJSON_IsObject(root))
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: the top level is %s; expected SGLang's object "
                          "{\"logical_count\": [...]}",
                          path, eplb__json_kind(root));
  const cJSON *lc = cJSON_GetObjectItemCaseSensitive(root, "logical_count");
  if (lc == NULL)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: no \"logical_count\" key; expected SGLang's "
                          "{\"logical_count\": [layers][experts]}",
                          path);
  sg_shape_t sh = {.path = path};
  int rc = sg_shape(lc, &sh, err);
  if (rc == 0)
    rc = eplb_stats_init(out, sh.L, sh.E, err);
  if (rc)
    return rc;
  out->dense_rows = 1;
  if (!sh.three)
    rc = sg_add_step(out, &sh, 0, lc, err);
  int32_t t = 0;
  const cJSON *step;
  if (sh.three)
    cJSON_ArrayForEach(step, lc) {
      rc = sg_add_step(out, &sh, t++, step, err);
      if (rc)
        break;
    }
  if (rc)
    eplb_stats_cleanup(out);
  return rc;
}

/* ---- detection and the public entry point ------------------------------ */

/* Decides the format of an EPLB_STATS_AUTO file from its content. */
static int detect(const cJSON *root, const char *path,
                  eplb_stats_format_t *format, eplb_error_t *err) {
  if (!cJSON_IsObject(root))
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: the top level is %s; expected an object: "
                          "MindSpeed-RL {\"layer\": {\"expert\": count}} or "
                          "SGLang {\"logical_count\": [...]}",
                          path, eplb__json_kind(root));
  if (cJSON_GetObjectItemCaseSensitive(root, "logical_count") != NULL) {
    *format = EPLB_STATS_SGLANG;
    return 0;
  }
  if (root->child == NULL)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: the top-level object is empty; expected "
                          "statistics",
                          path);
  int32_t k;
  if (eplb__parse_index(root->child->string, INT32_MAX, &k) != -1) {
    *format = EPLB_STATS_MINDSPEED;
    return 0;
  }
  return eplb_error_set(err, EPLB_EPARSE,
                        "%s: neither MindSpeed-RL nor SGLang statistics: the "
                        "first key \"%.40s\" is not a layer index and there "
                        "is no \"logical_count\"",
                        path, root->child->string);
}

/* The fast paths (fast.c) for well-formed files: 1 if one of them read
 * the text.  Errors are left to the full readers below; *stop receives
 * where the scanner for this file's format gave up. */
static int fast_read(eplb_stats_t *out, const char *text, size_t len,
                     eplb_stats_format_t format, size_t *stop) {
  size_t sg = 0, ms = 0;
  if (format != EPLB_STATS_MINDSPEED &&
      eplb__sglang_fast_at(out, text, len, &sg))
    return 1;
  if (format != EPLB_STATS_SGLANG &&
      eplb__mindspeed_fast_at(out, text, len, &ms))
    return 1;
  /* The scanner that got further is the one whose format this is. */
  *stop = format == EPLB_STATS_SGLANG      ? sg
          : format == EPLB_STATS_MINDSPEED ? ms
          : sg > ms                        ? sg
                                           : ms;
  return 0;
}

/* A file the fast scanners did not accept and that is too large for
 * cJSON's tree: the error says where the scanner stopped, which is where
 * the file is wrong (or unusual). */
static int too_many_values(const char *path, const char *text, size_t len,
                           size_t values, size_t stop, eplb_error_t *err) {
  long line = 1, col = 1;
  for (size_t i = 0; i < stop && i < len; i++) {
    col++;
    if (text[i] == '\n') {
      line++;
      col = 1;
    }
  }
  char near[24];
  size_t k = 0;
  for (size_t i = stop; i < len && k < 20 && text[i] != '\n'; i++)
    near[k++] = (text[i] >= 0x20 && text[i] < 0x7f) ? text[i] : '?';
  near[k] = '\0';
  return eplb_error_set(err, EPLB_EPARSE,
                        "%s: not a well-formed statistics file: the reader "
                        "stopped at line %ld, column %ld, near '%s'; and at "
                        "about %zu JSON values it is too large for the "
                        "detailed check (at most %d values): fix the file "
                        "there",
                        path, line, col, near, values, EPLB_JSON_MAX_VALUES);
}

int eplb__stats_read_text(eplb_stats_t *out, const char *path, const char *text,
                          size_t len, eplb_stats_format_t format, int use_fast,
                          eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  size_t stop = 0;
  if (use_fast && fast_read(out, text, len, format, &stop))
    return 0;
  size_t values = eplb__json_count_values(text, len);
  if (use_fast && values > EPLB_JSON_MAX_VALUES && strlen(text) == len)
    return too_many_values(path, text, len, values, stop, err);
  cJSON *root = NULL;
  int rc = eplb__json_parse_bounded(path, text, len, &root, err);
  if (rc == 0 && format == EPLB_STATS_AUTO)
    rc = detect(root, path, &format, err);
  if (rc == 0) {
    if (format == EPLB_STATS_MINDSPEED)
      rc = read_mindspeed(out, path, root, err);
    else if (format == EPLB_STATS_SGLANG &&
             (rc = eplb__json_unique_keys(path, root, err)) == 0)
      rc = read_sglang(out, path, root, err);
    else if (rc == 0)
      rc = eplb_error_set(err, EPLB_EARG, "%s: unknown statistics format %d",
                          path, (int)format);
  }
  cJSON_Delete(root);
  return rc;
}

/* Reads one statistics file: JSON (MindSpeed-RL or SGLang), or an HDF5
 * [steps][L][E] series summed over its steps. */
static int read_json_file(eplb_stats_t *out, const char *path,
                          eplb_stats_format_t format, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  if (format == EPLB_STATS_TRTLLM || format == EPLB_STATS_MINDIE)
    return eplb_error_set(err, EPLB_EARG,
                          "%s: is a file, but --format %s reads a directory "
                          "(a dump of several files)",
                          path, eplb_stats_format_name(format));
  /* An HDF5 [steps][L][E] series counts as the plain sum of its steps, as
   * a TensorRT-LLM dump's iterations do. */
  if (format == EPLB_STATS_AUTO && eplb__file_is_hdf5(path)) {
    eplb_series_t s;
    int rc = eplb__series_read_hdf5(&s, path, err);
    if (rc == 0) {
      rc = eplb_series_sum(&s, 0.0, out, err);
      eplb_series_cleanup(&s);
    }
    return rc;
  }
  char *text = NULL;
  size_t len = 0;
  int rc = eplb__read_file(path, &text, &len, err);
  if (rc == 0)
    rc = eplb__stats_read_text(out, path, text, len, format, 1, err);
  free(text);
  return rc;
}

/* 1 if path names a directory (errors are left to the file reader). */
static int is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

int eplb_stats_read_opts(eplb_stats_t *out, const char *path,
                         eplb_stats_format_t format,
                         const eplb_stats_read_opts_t *opts,
                         eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  if (path == NULL)
    return eplb_error_set(err, EPLB_EARG, "no statistics path");
  int ranged = opts != NULL && (opts->iter_min >= 0 || opts->iter_max >= 0);
  if (is_dir(path)) {
    if (format != EPLB_STATS_AUTO && format != EPLB_STATS_TRTLLM &&
        format != EPLB_STATS_MINDIE)
      return eplb_error_set(err, EPLB_EARG,
                            "%s: is a directory, but "
                            "--format %s reads one file",
                            path, eplb_stats_format_name(format));
    return eplb__stats_read_dir(out, path, format, opts, err);
  }
  if (ranged)
    return eplb_error_set(err, EPLB_EARG,
                          "%s: --iter-range selects iterations of a "
                          "TensorRT-LLM dump directory; this file has none",
                          path);
  return read_json_file(out, path, format, err);
}

int eplb_stats_read(eplb_stats_t *out, const char *path,
                    eplb_stats_format_t format, eplb_error_t *err) {
  return eplb_stats_read_opts(out, path, format, NULL, err);
}

/* Reads one path, or (with expand) every match of a pattern with * ? [ in
 * sorted order, and adds it to *st; first[] (1024 bytes, "" before the
 * first read) keeps the first path for messages. */
static int read_one(const char *path, int expand, eplb_stats_format_t format,
                    const eplb_stats_read_opts_t *opts, eplb_stats_t *st,
                    char *first, eplb_error_t *err) {
  if (expand && strpbrk(path, "*?[") != NULL) {
    glob_t g;
    if (glob(path, 0, NULL, &g) != 0) {
      globfree(&g);
      return eplb_error_set(err, EPLB_EIO,
                            "statistics pattern %s matches no file", path);
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < g.gl_pathc; i++)
      rc = read_one(g.gl_pathv[i], 0, format, opts, st, first, err);
    globfree(&g);
    return rc;
  }
  if (first[0] == '\0') {
    snprintf(first, 1024, "%s", path);
    return eplb_stats_read_opts(st, path, format, opts, err);
  }
  eplb_stats_t more;
  int rc = eplb_stats_read_opts(&more, path, format, opts, err);
  if (rc == 0)
    rc = eplb_stats_add(st, &more, first, path, err);
  eplb_stats_cleanup(&more);
  return rc;
}

int eplb_stats_read_many(eplb_stats_t *out, const char *const *paths, int n,
                         eplb_stats_format_t format,
                         const eplb_stats_read_opts_t *opts,
                         eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  if (n < 1)
    return eplb_error_set(err, EPLB_EARG, "no statistics to read");
  char first[1024] = "";
  int rc = 0;
  for (int i = 0; i < n && rc == 0; i++)
    rc = read_one(paths[i], 1, format, opts, out, first, err);
  if (rc)
    eplb_stats_cleanup(out);
  return rc;
}
