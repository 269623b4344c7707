/* formats/series_read.c - per-step statistics from files: SGLang's
 * recorder dumps ({"logical_count": [steps][L][E]}), HDF5 [steps][L][E]
 * datasets (through series_h5.h) and dump directories (stats_dir.c), into
 * the one series type of core/series.c. */
#include "eplb/series.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "formats/formats.h"
#include "formats/series_h5.h"
#include "util/fileio.h"

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

/* SGLang's {"logical_count": [steps][L][E]} ([L][E]: one step): the fast
 * scanner for a well-formed file, else cJSON and the checks that name what
 * is wrong. */
int eplb__series_read_json(eplb_series_t *out, const char *path,
                           const char *text, size_t len, int use_fast,
                           eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  if (use_fast && eplb__sglang_fast_series(out, text, len))
    return 0;
  cJSON *root = NULL;
  int rc = eplb__json_parse_bounded(path, text, len, &root, err);
  if (rc == 0 && !cJSON_IsObject(root))
    rc = eplb_error_set(err, EPLB_EPARSE,
                        "%s: the top level is %s; expected SGLang's object "
                        "{\"logical_count\": [steps][layers][experts]}",
                        path, eplb__json_kind(root));
  if (rc == 0)
    rc = eplb__json_unique_keys(path, root, err);
  if (rc) {
    cJSON_Delete(root);
    return rc;
  }
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
  int three =
      cJSON_IsArray(first) && cJSON_IsArray(cJSON_GetArrayItem(first, 0));
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
      rc = eplb_error_set(
          err, EPLB_ESHAPE,
          "%s: logical_count[%d] has %d layers, step 0 has %d", path, t,
          cJSON_IsArray(step) ? cJSON_GetArraySize(step) : -1, Lc);
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
   * those 8 bytes only, not a file that may hold a long series.  Opened
   * as every input is (a FIFO is refused, not waited on). */
  unsigned char head[8];
  int fd = eplb__open_regular(path, NULL);
  if (fd < 0)
    return 0; /* the caller's reader names the missing file */
  ssize_t n = read(fd, head, sizeof(head));
  close(fd);
  return n == (ssize_t)sizeof(head) &&
         memcmp(head, "\211HDF\r\n\032\n", 8) == 0;
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
  /* HDF5 opens the path itself: a FIFO must be refused first. */
  int rc = eplb__check_regular(path, err);
  if (rc)
    return rc;
  rc = eplb__h5_read3(path, max, &data, dims, msg, sizeof(msg));
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
  int rc = eplb__read_file(path, &text, &len, err);
  if (rc)
    return rc;
  rc = eplb__series_read_json(out, path, text, len, 1, err);
  free(text);
  return rc;
}
