/* formats/stats_dir.c - statistics dump directories: which engine wrote
 * one (TensorRT-LLM's meta_info.json + rank{r}.safetensors, or MindIE's
 * model_gen_config.json + {stage}_{rank}.csv), and the reader for it, as a
 * sum (eplb__stats_read_dir) or as a series (eplb__series_read_dir). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "eplb/series.h"
#include "formats/formats.h"

/* 1 if dir/name exists. */
static int has_file(const char *dir, const char *name) {
  char path[4096];
  struct stat sb;
  snprintf(path, sizeof(path), "%s/%s", dir, name);
  return stat(path, &sb) == 0;
}

int eplb__series_read_dir(struct eplb_series_s *out, const char *path,
                          eplb_error_t *err) {
  int rc = has_file(path, "model_gen_config.json")
               ? eplb__mindie_read_series(out, path, err)
               /* Else TensorRT-LLM's, which names a missing meta_info.json. */
               : eplb_stats_read_trtllm_series(out, path, NULL, err);
  /* Some failures (a series too large to hold) are found where the
   * directory is not known: name it here. */
  if (rc && err != NULL && strstr(err->msg, path) == NULL)
    eplb_error_prefix(err, "%s", path);
  return rc;
}

int eplb__stats_read_dir(eplb_stats_t *out, const char *path,
                         eplb_stats_format_t format,
                         const eplb_stats_read_opts_t *opts,
                         eplb_error_t *err) {
  memset(out, 0, sizeof(*out));
  if (format == EPLB_STATS_AUTO)
    format = has_file(path, "meta_info.json")          ? EPLB_STATS_TRTLLM
             : has_file(path, "model_gen_config.json") ? EPLB_STATS_MINDIE
                                                       : EPLB_STATS_AUTO;
  int ranged = opts != NULL && (opts->iter_min >= 0 || opts->iter_max >= 0);
  if (format == EPLB_STATS_TRTLLM)
    return eplb__trtllm_read(out, path, opts, err);
  if (format == EPLB_STATS_MINDIE && ranged)
    return eplb_error_set(err, EPLB_EARG,
                          "%s: --iter-range selects "
                          "TensorRT-LLM iterations; a MindIE dump's last "
                          "block already is the window",
                          path);
  if (format == EPLB_STATS_MINDIE)
    return eplb__mindie_read(out, path, err);
  return eplb_error_set(err, EPLB_EIO,
                        "%s: a directory with neither "
                        "meta_info.json (TensorRT-LLM) nor "
                        "model_gen_config.json (MindIE); pass a statistics "
                        "file or a dump directory",
                        path);
}
