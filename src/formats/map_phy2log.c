/* formats/map_phy2log.c - the maps that are plain phy2log arrays: SGLang's
 * {"physical_to_logical_map": [layers][slots]} (--init-expert-location)
 * and DeepSeek EPLB's {"phy2log", "log2phy", "logcnt"}.
 *
 * SGLang numbers its rows by hidden layer, dense layers included
 * (DeepSeek-V3: 61 rows, 0-2 dense), and wants all of them: the writer
 * emits rows 0..max(layer_ids) and fills a row the placement does not hold
 * (a dense layer, dropped from the statistics) with the contiguous
 * placement, slot s -> expert s % E.  DeepSeek's arrays have one row per
 * placement layer: phy2log [L][S], log2phy [L][E][R] (the slots of each
 * expert in order, padded with -1 to R = the most replicas of any expert),
 * logcnt [L][E].  Both are read back as a placement with num_gpus = 1 (the
 * files do not say G; the caller regroups, as for TensorRT-LLM YAML). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/formats.h"

/* Writes one JSON array of n ids. */
static void ids(FILE *f, const int32_t *row, int32_t n) {
  fputc('[', f);
  for (int32_t i = 0; i < n; i++)
    fprintf(f, i ? ", %d" : "%d", (int)row[i]);
  fputc(']', f);
}

/* The placement row holding layer id `id`, or -1. */
static int32_t row_of(const eplb_placement_t *p, int32_t id) {
  for (int32_t l = 0; l < p->num_layers; l++)
    if (p->layer_ids[l] == id)
      return l;
  return -1;
}

int eplb__write_sglang(FILE *f, const void *ctx, eplb_error_t *err) {
  const eplb_placement_t *p = ctx;
  int32_t S = p->num_slots, rows = 0;
  int32_t *fill = malloc(sizeof(int32_t) * (size_t)S);
  if (fill == NULL)
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  for (int32_t s = 0; s < S; s++)
    fill[s] = s % p->num_experts;
  for (int32_t l = 0; l < p->num_layers; l++)
    if (p->layer_ids[l] + 1 > rows)
      rows = p->layer_ids[l] + 1;
  if (rows > EPLB_MAX_LAYERS) {
    free(fill);
    return eplb_error_set(err, EPLB_EMAP,
                          "layer id %d is above %d: SGLang "
                          "rows are hidden layers",
                          (int)rows - 1, EPLB_MAX_LAYERS - 1);
  }
  fprintf(f, "{\"physical_to_logical_map\": [\n");
  for (int32_t r = 0; r < rows; r++) {
    int32_t l = row_of(p, r);
    fprintf(f, "  ");
    ids(f, l < 0 ? fill : p->phy2log + (size_t)l * (size_t)S, S);
    fprintf(f, "%s\n", r + 1 < rows ? "," : "");
  }
  fprintf(f, "]}\n");
  free(fill);
  return 0;
}

/* The replicas of each expert of layer l: cnt[E], and slots[E * R]. */
static int32_t max_replicas(const eplb_placement_t *p) {
  int32_t E = p->num_experts, S = p->num_slots, best = 1;
  int32_t *cnt = calloc((size_t)E, sizeof(int32_t));
  for (int32_t l = 0; cnt && l < p->num_layers; l++) {
    memset(cnt, 0, sizeof(int32_t) * (size_t)E);
    for (int32_t s = 0; s < S; s++) {
      int32_t c = ++cnt[p->phy2log[(size_t)l * S + s]];
      if (c > best)
        best = c;
    }
  }
  free(cnt);
  return best;
}

/* One layer's log2phy rows and logcnt, into buffers of E*R and E. */
static void layer_log2phy(const eplb_placement_t *p, int32_t l, int32_t R,
                          int32_t *l2p, int32_t *cnt) {
  int32_t E = p->num_experts, S = p->num_slots;
  memset(cnt, 0, sizeof(int32_t) * (size_t)E);
  for (size_t i = 0; i < (size_t)E * (size_t)R; i++)
    l2p[i] = -1;
  for (int32_t s = 0; s < S; s++) {
    int32_t e = p->phy2log[(size_t)l * S + s];
    l2p[(size_t)e * R + cnt[e]++] = s;
  }
}

int eplb__write_deepseek(FILE *f, const void *ctx, eplb_error_t *err) {
  const eplb_placement_t *p = ctx;
  int32_t L = p->num_layers, E = p->num_experts, S = p->num_slots;
  int32_t R = max_replicas(p);
  int32_t *l2p = malloc(sizeof(int32_t) * (size_t)E * (size_t)R);
  int32_t *cnt = malloc(sizeof(int32_t) * (size_t)E);
  if (l2p == NULL || cnt == NULL) {
    free(l2p);
    free(cnt);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  fprintf(f, "{\"phy2log\": [\n");
  for (int32_t l = 0; l < L; l++) {
    fprintf(f, "  ");
    ids(f, p->phy2log + (size_t)l * S, S);
    fprintf(f, "%s\n", l + 1 < L ? "," : "");
  }
  fprintf(f, "],\n\"log2phy\": [\n");
  for (int32_t l = 0; l < L; l++) {
    layer_log2phy(p, l, R, l2p, cnt);
    fprintf(f, "  [");
    for (int32_t e = 0; e < E; e++) {
      fprintf(f, e ? ", " : "");
      ids(f, l2p + (size_t)e * R, R);
    }
    fprintf(f, "]%s\n", l + 1 < L ? "," : "");
  }
  fprintf(f, "],\n\"logcnt\": [\n");
  for (int32_t l = 0; l < L; l++) {
    layer_log2phy(p, l, R, l2p, cnt);
    fprintf(f, "  ");
    ids(f, cnt, E);
    fprintf(f, "%s\n", l + 1 < L ? "," : "");
  }
  fprintf(f, "]}\n");
  free(l2p);
  free(cnt);
  return 0;
}

/* ---- reading ----------------------------------------------------------- */

/* Checks rows = [L][S] of expert ids; returns L and S. */
static int shape(const cJSON *rows, const char *path, const char *key,
                 int32_t *L, int32_t *S, eplb_error_t *err) {
  if (!cJSON_IsArray(rows) || rows->child == NULL)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: \"%s\" is %s; expected a "
                          "non-empty array of layers",
                          path, key, eplb__json_kind(rows));
  *L = 0;
  *S = cJSON_GetArraySize(rows->child);
  const cJSON *r;
  cJSON_ArrayForEach(r, rows) {
    if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != *S || *S < 1)
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: \"%s\"[%d] is not an "
                            "array of %d slots like row 0",
                            path, key, (int)*L, (int)*S);
    if (++*L > EPLB_MAX_LAYERS)
      return eplb_error_set(err, EPLB_EPARSE,
                            "%s: \"%s\" has more than %d "
                            "layers",
                            path, key, EPLB_MAX_LAYERS);
  }
  return 0;
}

/* Copies the rows into p->phy2log; E = largest id + 1. */
static int fill(eplb_placement_t *p, const cJSON *rows, const char *path,
                const char *key, eplb_error_t *err) {
  int32_t l = 0, max = -1;
  const cJSON *r, *v;
  cJSON_ArrayForEach(r, rows) {
    int32_t s = 0;
    cJSON_ArrayForEach(v, r) {
      int64_t e = 0;
      const char *why = eplb__json_int(v, 0, EPLB_MAX_EXPERTS - 1, &e);
      if (why)
        return eplb_error_set(err, EPLB_EPARSE,
                              "%s: \"%s\"[%d][%d] %s; "
                              "expected an expert id 0..%d",
                              path, key, (int)l, (int)s, why,
                              EPLB_MAX_EXPERTS - 1);
      p->phy2log[(size_t)l * p->num_slots + s++] = (int32_t)e;
      if (e > max)
        max = (int32_t)e;
    }
    l++;
  }
  p->num_experts = max + 1;
  return 0;
}

/* DeepSeek: logcnt (when present) must count the replicas in phy2log. */
static int check_logcnt(const eplb_placement_t *p, const cJSON *root,
                        const char *path, eplb_error_t *err) {
  const cJSON *lc = cJSON_GetObjectItemCaseSensitive(root, "logcnt");
  if (lc == NULL)
    return 0;
  int32_t l = 0;
  const cJSON *row;
  cJSON_ArrayForEach(row, lc) {
    if (l >= p->num_layers || !cJSON_IsArray(row))
      break;
    int32_t e = 0, n;
    const cJSON *v;
    cJSON_ArrayForEach(v, row) {
      n = 0;
      for (int32_t s = 0; s < p->num_slots; s++)
        n += p->phy2log[(size_t)l * p->num_slots + s] == e;
      if (!cJSON_IsNumber(v) || v->valuedouble != n)
        return eplb_error_set(err, EPLB_EMAP,
                              "%s: \"logcnt\"[%d][%d] is not "
                              "%d, the replicas of expert %d in \"phy2log\"",
                              path, (int)l, (int)e, (int)n, (int)e);
      e++;
    }
    l++;
  }
  if (l != p->num_layers)
    return eplb_error_set(err, EPLB_EMAP,
                          "%s: \"logcnt\" does not have the "
                          "%d layers of \"phy2log\"",
                          path, (int)p->num_layers);
  return 0;
}

int eplb__map_read_phy2log(eplb_placement_t *out, const char *path,
                           const char *text, size_t len, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  cJSON *root = NULL;
  int32_t L = 0, S = 0;
  int rc = eplb__json_parse_bounded(path, text, len, &root, err);
  if (rc == 0)
    rc = eplb__json_unique_keys(path, root, err);
  const char *key = "physical_to_logical_map";
  const cJSON *rows = NULL;
  if (rc == 0) {
    rows = cJSON_GetObjectItemCaseSensitive(root, key);
    if (rows == NULL)
      rows = cJSON_GetObjectItemCaseSensitive(root, key = "phy2log");
    rc = shape(rows, path, key, &L, &S, err);
  }
  if (rc == 0)
    rc = eplb_placement_init(out, L, EPLB_MAX_EXPERTS, S, 1, err);
  if (rc == 0)
    rc = fill(out, rows, path, key, err);
  if (rc == 0)
    rc = eplb_placement_check(out, 0, path, err);
  if (rc == 0 && strcmp(key, "phy2log") == 0)
    rc = check_logcnt(out, root, path, err);
  cJSON_Delete(root);
  if (rc)
    eplb_placement_cleanup(out);
  return rc;
}
