/* formats/formats.h - helpers shared by the statistics readers and the map
 * readers and writers in src/formats/ (internal: not installed).
 *
 * Formats are adapters at the edge: the readers turn JSON or YAML text into
 * the one histogram type (eplb_stats_t) or the one placement type
 * (eplb_placement_t); the writers do the reverse.  What they share is how
 * they talk about the text: where a parse stopped (line and column), what a
 * JSON value is, whether a key or a number is a valid index. */
#ifndef EPLB_FORMATS_FORMATS_H
#define EPLB_FORMATS_FORMATS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "eplb/error.h"
#include "eplb/formats.h"

/* The most values (numbers, strings, arrays, objects...) a JSON text may
 * hold for cJSON to build its tree of them: about 80 bytes of memory per
 * value (112 with a key), so at most about 450 MB.  Well-formed statistics
 * files are read by the fast scanners (fast.c) whatever their size; this
 * bounds what a malformed or unusual file costs. */
#define EPLB_JSON_MAX_VALUES 4000000

/* How many values `len` bytes of JSON text hold, at most (one per '[',
 * '{' and ',' outside strings, plus one): a linear scan, no allocation. */
size_t eplb__json_count_values(const char *text, size_t len);

/* Parses `len` bytes of `text` (the content of `path`) as one JSON value
 * with nothing but white space after it.  Returns 0 and *out (caller frees
 * with cJSON_Delete) or EPLB_EPARSE with the line and column where the
 * parser stopped (an empty file, a NUL byte, nesting deeper than cJSON's
 * 1000 levels say so).  Thread-safe: does not use cJSON_GetErrorPtr. */
int eplb__json_parse(const char *path, const char *text, size_t len,
                     cJSON **out, eplb_error_t *err);

/* eplb__json_parse, refusing (EPLB_EPARSE, with the count) a text of more
 * than EPLB_JSON_MAX_VALUES values before any tree is built: for the
 * statistics, map and config readers.  (A safetensors header is bounded by
 * its file instead: one entry per tensor of a dump.) */
int eplb__json_parse_bounded(const char *path, const char *text, size_t len,
                             cJSON **out, eplb_error_t *err);

/* Every object in the tree under `root` holds each key once: cJSON keeps
 * both copies of a duplicate and its lookups find the first, so
 * {"device_count": 2, "device_count": 4} would silently read as 2.  Returns
 * 0 or EPLB_EPARSE "<path>: key "device_count" appears twice in
 * layer_list[0]; each key may appear once". */
int eplb__json_unique_keys(const char *path, const cJSON *root,
                           eplb_error_t *err);

/* "an object", "an array", "a string", "a number", "null", "true or false":
 * for messages that say what was found instead.  NULL: "nothing". */
const char *eplb__json_kind(const cJSON *v);

/* Parses a JSON object key that must be a canonical decimal index:
 * digits only, no sign, no leading zero (except "0"), at most `max`.
 * Returns 0 and *out, or -1 (the key is not such an integer) or -2 (it is
 * one but above max). */
int eplb__parse_index(const char *key, int32_t max, int32_t *out);

/* Reads a JSON number that must be an integer in min..max.  Returns NULL
 * and *out, or a short reason for a message ("is not a number", "is not an
 * integer", "is out of range"). */
const char *eplb__json_int(const cJSON *v, int64_t min, int64_t max,
                           int64_t *out);

/* Checks one count read from a file: finite, >= 0, <= EPLB_MAX_COUNT.
 * Returns 0, or EPLB_ECOUNT with "<path>: <where>: count ... is ..." where
 * `where` names the key or index path (e.g. `layer "3", expert "17"`). */
int eplb__check_count(double v, const char *path, const char *where,
                      eplb_error_t *err);

/* Fast paths for well-formed statistics (fast.c).  Each returns 1 with
 * *out filled, exactly as the full reader would fill it, when `text` (len
 * bytes) is a valid file of its format: SGLang's object with the single key
 * "logical_count" (dense_rows = 1), or MindSpeed-RL's layer objects with
 * plain decimal keys.  Otherwise 0 with *out empty, and the caller runs the
 * full reader, which says what is wrong. */
int eplb__sglang_fast(eplb_stats_t *out, const char *text, size_t len);
int eplb__mindspeed_fast(eplb_stats_t *out, const char *text, size_t len);
/* The same, with *stop (may be NULL) = the offset where the scan stopped:
 * on failure, where the file stops being one the scanner accepts. */
int eplb__sglang_fast_at(eplb_stats_t *out, const char *text, size_t len,
                         size_t *stop);
int eplb__mindspeed_fast_at(eplb_stats_t *out, const char *text, size_t len,
                            size_t *stop);
/* SGLang's file as a series (every step kept; [L][E] is one step), as
 * series_read.c's full reader would read it; 1 or 0 (give up). */
struct eplb_series_s;
int eplb__sglang_fast_series(struct eplb_series_s *out, const char *text,
                             size_t len);

/* Reads statistics from `len` bytes of `text` (NUL-terminated, the content
 * of `path`) in `format` (AUTO, MINDSPEED or SGLANG): through the fast
 * scanners first when use_fast, else with the full reader alone (the fuzz
 * targets compare both on the same bytes).  *out is empty on failure. */
int eplb__stats_read_text(eplb_stats_t *out, const char *path, const char *text,
                          size_t len, eplb_stats_format_t format, int use_fast,
                          eplb_error_t *err);

/* The TensorRT-LLM YAML map reader (formats/trtllm_yaml.c), for
 * eplb_placement_read (map_read.c).  `text` is the NUL-terminated content
 * of `path`; *out must be empty and stays empty on failure. */
int eplb__map_read_yaml(eplb_placement_t *out, const char *path,
                        const char *text, eplb_error_t *err);

/* Reads a statistics dump directory (formats/stats_dir.c): TensorRT-LLM
 * (meta_info.json + rank{r}.safetensors) or MindIE (model_gen_config.json
 * + {stage}_{rank}.csv), detected from the files unless `format` (AUTO,
 * TRTLLM or MINDIE) says.
 * opts may be NULL.  *out is empty on failure. */
int eplb__stats_read_dir(eplb_stats_t *out, const char *path,
                         eplb_stats_format_t format,
                         const eplb_stats_read_opts_t *opts, eplb_error_t *err);

/* The two dump readers behind it (formats/trtllm_stats.c, formats/mindie.c):
 * `dir` is the dump directory. */
int eplb__trtllm_read(eplb_stats_t *out, const char *dir,
                      const eplb_stats_read_opts_t *opts, eplb_error_t *err);
int eplb__mindie_read(eplb_stats_t *out, const char *dir, eplb_error_t *err);
/* A MindIE dump as a series: block b of every CSV is step b, what was
 * counted since block b - 1 (the blocks are cumulative). */
int eplb__mindie_read_series(struct eplb_series_s *out, const char *dir,
                             eplb_error_t *err);
/* A dump directory as a series: MindIE (model_gen_config.json) or
 * TensorRT-LLM (one step per iteration), detected as eplb__stats_read_dir
 * does. */
int eplb__series_read_dir(struct eplb_series_s *out, const char *path,
                          eplb_error_t *err);
/* 1 when the file at path starts with HDF5's signature (reads 8 bytes; 0
 * for a file that cannot be opened). */
int eplb__file_is_hdf5(const char *path);
/* SGLang's series from `len` bytes of `text` (NUL-terminated, the content
 * of `path`): the fast scanner first when use_fast, else the full reader
 * alone (series_read.c; the fuzz targets compare both). */
int eplb__series_read_json(struct eplb_series_s *out, const char *path,
                           const char *text, size_t len, int use_fast,
                           eplb_error_t *err);
/* A placement from `len` bytes of `text` (NUL-terminated, the content of
 * `path`) in `format` (AUTO: from the content, as eplb_placement_read
 * decides) (map_read.c): through the fast scanners first when use_fast,
 * else with the full readers alone (the fuzz targets compare both). */
int eplb__placement_read_text(eplb_placement_t *out, const char *path,
                              const char *text, size_t len,
                              eplb_map_format_t format, int use_fast,
                              eplb_error_t *err);

/* Fast paths for well-formed maps (map_fast.c): the expert map JSON, and
 * SGLang's physical_to_logical_map or DeepSeek's phy2log (with log2phy
 * and logcnt).  Each returns 1 with *out filled exactly as the full reader
 * (map_read.c, map_phy2log.c) would fill it, when `text` (len bytes) is a
 * file of the plain kind it scans; otherwise 0 with *out empty, and the
 * caller runs the full reader, which says what is wrong. */
int eplb__expert_map_fast(eplb_placement_t *out, const char *text, size_t len);
int eplb__phy2log_fast(eplb_placement_t *out, const char *text, size_t len);
/* An HDF5 [steps][L][E] series (series_read.c, through series_h5.h). */
int eplb__series_read_hdf5(struct eplb_series_s *out, const char *path,
                           eplb_error_t *err);

/* SGLang and DeepSeek maps (formats/map_phy2log.c): eplb__write_fn writers
 * (ctx = a checked eplb_placement_t) and the reader of both. */
int eplb__write_sglang(FILE *f, const void *ctx, eplb_error_t *err);
int eplb__write_deepseek(FILE *f, const void *ctx, eplb_error_t *err);
int eplb__map_read_phy2log(eplb_placement_t *out, const char *path,
                           const char *text, size_t len, eplb_error_t *err);

#endif /* EPLB_FORMATS_FORMATS_H */
