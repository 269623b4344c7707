/* series.c - per-step statistics (eplb_series_t): reading SGLang's recorder
 * dumps and HDF5 [steps][L][E] datasets, EMA sums, and the backtest that
 * chooses the EMA rate.  See eplb/series.h for why. */
#include "eplb/series.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#include "formats/formats.h"
#include "series_h5.h"
#include "util/fileio.h"

int eplb_series_init(eplb_series_t *s, int32_t T, int32_t L, int32_t E,
                     eplb_error_t *err) {
  memset(s, 0, sizeof(*s));
  if (T < 1 || T > EPLB_MAX_STEPS || L < 1 || L > EPLB_MAX_LAYERS || E < 1 ||
      E > EPLB_MAX_EXPERTS)
    return eplb_error_set(err, EPLB_EARG,
                          "a series of %d steps x %d layers x %d experts is "
                          "outside 1..%d x 1..%d x 1..%d",
                          (int)T, (int)L, (int)E, EPLB_MAX_STEPS,
                          EPLB_MAX_LAYERS, EPLB_MAX_EXPERTS);
  size_t n = (size_t)T * (size_t)L * (size_t)E;
  if (n > (size_t)1 << 31)
    return eplb_error_set(err, EPLB_EARG,
                          "a series of %d x %d x %d values is too large "
                          "(2^31 at most); pass fewer steps",
                          (int)T, (int)L, (int)E);
  s->layer_ids = malloc(sizeof(int32_t) * (size_t)L);
  s->load = calloc(n, sizeof(double));
  if (s->layer_ids == NULL || s->load == NULL) {
    eplb_series_cleanup(s);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory for a %zu-value series",
                          n);
  }
  for (int32_t l = 0; l < L; l++)
    s->layer_ids[l] = l;
  s->num_steps = T;
  s->num_layers = L;
  s->num_experts = E;
  return 0;
}

void eplb_series_cleanup(eplb_series_t *s) {
  if (s == NULL)
    return;
  free(s->layer_ids);
  free(s->load);
  memset(s, 0, sizeof(*s));
}

/* Checks one value; the error names the file and the index. */
static int check_value(double v, const char *path, int t, int l, int e,
                       eplb_error_t *err) {
  if (isfinite(v) && v >= 0 && v <= EPLB_MAX_COUNT)
    return 0;
  return eplb_error_set(err, EPLB_ECOUNT,
                        "%s: step %d, layer %d, expert %d: count %g is "
                        "negative, not finite or above 2^53",
                        path, t, l, e, v);
}

static int read_json(eplb_series_t *out, const char *path, const char *text,
                     eplb_error_t *err) {
  cJSON *root = cJSON_Parse(text);
  if (root == NULL)
    return eplb_error_set(err, EPLB_EPARSE,
                          "%s: not valid JSON near byte %ld; check the file is "
                          "complete",
                          path, (long)(cJSON_GetErrorPtr() - text));
  int rc = 0;
  const cJSON *lc = cJSON_GetObjectItemCaseSensitive(root, "logical_count");
  if (!cJSON_IsArray(lc) || cJSON_GetArraySize(lc) < 1) {
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: no \"logical_count\" array: expected SGLang's "
                        "{\"logical_count\": [steps][layers][experts]}",
                        path);
    goto done;
  }
  /* [L][E] (numbers two deep) is one step; [T][L][E] is a series. */
  const cJSON *first = cJSON_GetArrayItem(lc, 0);
  int three = cJSON_IsArray(first) && cJSON_IsArray(cJSON_GetArrayItem(first, 0));
  int T = three ? cJSON_GetArraySize(lc) : 1;
  const cJSON *s0 = three ? first : lc;
  int Lc = cJSON_GetArraySize(s0);
  const cJSON *r0 = cJSON_GetArrayItem(s0, 0);
  int Ec = cJSON_IsArray(r0) ? cJSON_GetArraySize(r0) : 0;
  rc = eplb_series_init(out, T, Lc, Ec, err);
  if (rc) {
    eplb_error_prefix(err, "%s", path);
    goto done;
  }
  out->dense_rows = 1;
  for (int t = 0; t < T && rc == 0; t++) {
    const cJSON *step = three ? cJSON_GetArrayItem(lc, t) : lc;
    if (!cJSON_IsArray(step) || cJSON_GetArraySize(step) != Lc) {
      rc = eplb_error_set(err, EPLB_ESHAPE,
                          "%s: logical_count[%d] has %d layers, step 0 has %d",
                          path, t, cJSON_IsArray(step) ? cJSON_GetArraySize(step) : -1,
                          Lc);
      break;
    }
    for (int l = 0; l < Lc && rc == 0; l++) {
      const cJSON *row = cJSON_GetArrayItem(step, l);
      if (!cJSON_IsArray(row) || cJSON_GetArraySize(row) != Ec) {
        rc = eplb_error_set(err, EPLB_ESHAPE,
                            "%s: step %d, layer %d: expected %d experts", path,
                            t, l, Ec);
        break;
      }
      int e = 0;
      const cJSON *v;
      cJSON_ArrayForEach(v, row) {
        if (!cJSON_IsNumber(v)) {
          rc = eplb_error_set(err, EPLB_EPARSE,
                              "%s: step %d, layer %d, expert %d: not a number",
                              path, t, l, e);
          break;
        }
        rc = check_value(v->valuedouble, path, t, l, e, err);
        if (rc)
          break;
        out->load[((size_t)t * Lc + l) * Ec + e] = v->valuedouble;
        e++;
      }
    }
  }
  if (rc)
    eplb_series_cleanup(out);
done:
  cJSON_Delete(root);
  return rc;
}

int eplb__file_is_hdf5(const char *path) {
  /* HDF5 files start with the 8-byte signature \211HDF\r\n\032\n: read
   * those 8 bytes only, not a file that may hold a long series. */
  unsigned char head[8];
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return 0; /* the caller's reader names the missing file */
  size_t n = fread(head, 1, sizeof(head), f);
  fclose(f);
  return n == sizeof(head) && memcmp(head, "\211HDF\r\n\032\n", 8) == 0;
}

/* An HDF5 [steps][L][E] file, through series_h5.h (libeplb links the
 * reader; eplb-plan loads it as a module only when it meets such a file). */
int eplb__series_read_hdf5(eplb_series_t *out, const char *path,
                           eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  const int64_t max[3] = {EPLB_MAX_STEPS, EPLB_MAX_LAYERS, EPLB_MAX_EXPERTS};
  int64_t dims[3] = {0, 0, 0};
  double *data = NULL;
  char msg[EPLB_ERROR_MSG_MAX];
  int rc = eplb__h5_read3(path, max, &data, dims, msg, sizeof(msg));
  if (rc)
    return eplb_error_set(err, rc, "%s", msg);
  rc = eplb_series_init(out, (int32_t)dims[0], (int32_t)dims[1],
                        (int32_t)dims[2], err);
  if (rc) {
    free(data);
    eplb_error_prefix(err, "%s", path);
    return rc;
  }
  size_t n = (size_t)dims[0] * (size_t)dims[1] * (size_t)dims[2];
  memcpy(out->load, data, sizeof(double) * n);
  free(data);
  for (size_t i = 0; i < n && rc == 0; i++)
    rc = check_value(out->load[i], path, (int)(i / (size_t)(dims[1] * dims[2])),
                     (int)(i / (size_t)dims[2] % (size_t)dims[1]),
                     (int)(i % (size_t)dims[2]), err);
  if (rc)
    eplb_series_cleanup(out);
  return rc;
}

int eplb_series_read(eplb_series_t *out, const char *path, eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  /* A directory is a MindIE dump (model_gen_config.json: one step per
   * collection block) or a TensorRT-LLM one (one step per iteration). */
  struct stat sb;
  if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
    return eplb__series_read_dir(out, path, err);
  if (eplb__file_is_hdf5(path))
    return eplb__series_read_hdf5(out, path, err);
  char *text = NULL;
  size_t len = 0;
  int rc = eplb_read_file(path, &text, &len, err);
  if (rc)
    return rc;
  rc = read_json(out, path, text, err);
  free(text);
  return rc;
}

/* EMA weights of T steps, rescaled to add up to T. */
static void ema_weights(int32_t T, double alpha, double *w) {
  double sum = 0;
  for (int32_t t = 0; t < T; t++) {
    w[t] = pow(1.0 - alpha, (double)(T - 1 - t));
    sum += w[t];
  }
  for (int32_t t = 0; t < T; t++)
    w[t] *= (double)T / sum;
}

int eplb_series_sum(const eplb_series_t *s, double alpha, eplb_stats_t *out,
                    eplb_error_t *err) {
  if (!(alpha >= 0 && alpha < 1))
    return eplb_error_set(err, EPLB_EARG, "--ema-alpha %g is outside 0..1 "
                          "(1 excluded)", alpha);
  int rc = eplb_stats_init(out, s->num_layers, s->num_experts, err);
  if (rc)
    return rc;
  double *w = malloc(sizeof(double) * (size_t)s->num_steps);
  if (w == NULL) {
    eplb_stats_cleanup(out);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  ema_weights(s->num_steps, alpha, w);
  size_t n = (size_t)s->num_layers * (size_t)s->num_experts;
  for (int32_t t = 0; t < s->num_steps; t++)
    for (size_t i = 0; i < n; i++)
      out->load[i] += w[t] * s->load[(size_t)t * n + i];
  for (size_t i = 0; i < n; i++)
    if (out->load[i] > EPLB_MAX_COUNT) {
      free(w);
      eplb_stats_cleanup(out);
      return eplb_error_set(err, EPLB_ECOUNT,
                            "the series sums above 2^53; scale the counts down");
    }
  memcpy(out->layer_ids, s->layer_ids, sizeof(int32_t) * (size_t)s->num_layers);
  out->dense_rows = s->dense_rows;
  free(w);
  return 0;
}

int eplb_series_choose_alpha(const eplb_series_t *s, double *alpha,
                             eplb_error_t *err) {
  static const double cand[] = {0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5};
  const int nc = (int)(sizeof(cand) / sizeof(cand[0]));
  *alpha = 0;
  int32_t T = s->num_steps, half = T / 2, L = s->num_layers, E = s->num_experts;
  if (T < 4)
    return 0;
  double *w = malloc(sizeof(double) * (size_t)half);
  double *pred = malloc(sizeof(double) * (size_t)E);
  double *act = malloc(sizeof(double) * (size_t)E);
  if (!w || !pred || !act) {
    free(w);
    free(pred);
    free(act);
    return eplb_error_set(err, EPLB_ENOMEM, "out of memory");
  }
  double best = -1;
  for (int c = 0; c < nc; c++) {
    ema_weights(half, cand[c], w);
    double sse = 0;
    for (int32_t l = 0; l < L; l++) {
      double ps = 0, as = 0;
      for (int32_t e = 0; e < E; e++) {
        pred[e] = act[e] = 0;
        for (int32_t t = 0; t < half; t++)
          pred[e] += w[t] * s->load[((size_t)t * L + l) * E + e];
        for (int32_t t = half; t < T; t++)
          act[e] += s->load[((size_t)t * L + l) * E + e];
        ps += pred[e];
        as += act[e];
      }
      if (ps <= 0 || as <= 0)
        continue; /* an idle layer says nothing about the rate */
      for (int32_t e = 0; e < E; e++) { /* compare shares, not volumes */
        double d = pred[e] / ps - act[e] / as;
        sse += d * d;
      }
    }
    if (best < 0 || sse < best) {
      best = sse;
      *alpha = cand[c];
    }
  }
  free(w);
  free(pred);
  free(act);
  return 0;
}
