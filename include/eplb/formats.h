/* eplb/formats.h - the files users already have, in and out: statistics
 * (MindSpeed-RL token_collects_all.json, SGLang logical_count, TensorRT-LLM
 * and MindIE dump directories, HDF5 series) read into the one histogram
 * type, and expert maps (MindSpeed-RL / vllm-ascend / MindIE expert-map
 * JSON, TensorRT-LLM YAML, SGLang, DeepSeek) read into and written from the
 * one placement type.  docs/formats.md describes every format. */
#ifndef EPLB_FORMATS_H
#define EPLB_FORMATS_H

#include <stdint.h>

#include "eplb/error.h"
#include "eplb/placement.h"
#include "eplb/series.h"
#include "eplb/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- statistics ---------------------------------------------------- */

typedef enum {
  EPLB_STATS_AUTO = 0,  /* detect from content */
  EPLB_STATS_MINDSPEED, /* {"layer": {"expert": count}} */
  EPLB_STATS_SGLANG,    /* {"logical_count": [L][E]} or [steps][L][E] */
  EPLB_STATS_TRTLLM,    /* directory: meta_info.json + rank{r}.safetensors */
  EPLB_STATS_MINDIE, /* directory: model_gen_config.json + {stage}_{rank}.csv */
} eplb_stats_format_t;

/* Reads statistics from `path` in `format` (EPLB_STATS_AUTO detects it);
 * `path` may be a TensorRT-LLM or MindIE dump directory (all iterations: see
 * eplb_stats_read_opts), or (AUTO only) an HDF5 [steps][L][E] series, read
 * as the plain sum of its steps (eplb/series.h).  *out must be empty; on
 * failure it stays empty and err names the file and the offending key, index or
 * line. */
int eplb_stats_read(eplb_stats_t *out, const char *path,
                    eplb_stats_format_t format, eplb_error_t *err);

/* Options of eplb_stats_read_opts.  iter_min..iter_max (inclusive) select
 * the iterations of a TensorRT-LLM dump; -1, -1 = all of them.  Other
 * formats carry no iteration numbers: a range given for them is
 * EPLB_EARG. */
typedef struct eplb_stats_read_opts_s {
  int64_t iter_min, iter_max;
} eplb_stats_read_opts_t;

/* Largest iteration number --iter-range accepts. */
#define EPLB_MAX_ITER 1000000000

/* eplb_stats_read with options (opts may be NULL: all iterations).  `path`
 * may be a directory: a TensorRT-LLM dump (meta_info.json) or a MindIE dump
 * (model_gen_config.json), detected from the files it holds. */
int eplb_stats_read_opts(eplb_stats_t *out, const char *path,
                         eplb_stats_format_t format,
                         const eplb_stats_read_opts_t *opts, eplb_error_t *err);

/* Reads a TensorRT-LLM dump directory iteration by iteration: step t of
 * *out (an eplb_series_t, eplb/series.h) is iteration first + t, summed over
 * ranks, for every iteration from the first to the last one present in the
 * range of opts (may be NULL: all).  Every (iteration, layer) of that span
 * must be in some rank's file (else EPLB_ESHAPE naming the key).  For
 * metrics TensorRT-LLM averages per iteration (eplb-report). */
struct eplb_series_s;
int eplb_stats_read_trtllm_series(struct eplb_series_s *out, const char *dir,
                                  const eplb_stats_read_opts_t *opts,
                                  eplb_error_t *err);

/* Reads every path (a file, a dump directory, or a glob pattern with * ?
 * or [ whose matches are read in sorted order; no match is EPLB_EIO) with
 * eplb_stats_read_opts and sums them into *out (per-rank dumps of one
 * model).  n >= 1.  Errors name the file that failed or whose shape differs
 * from the first.  *out must be empty and stays empty on failure. */
int eplb_stats_read_many(eplb_stats_t *out, const char *const *paths, int n,
                         eplb_stats_format_t format,
                         const eplb_stats_read_opts_t *opts, eplb_error_t *err);

/* Parses a format name ("auto", "mindspeed", "sglang", "trtllm",
 * "mindie"); -1 if unknown. */
int eplb_stats_format_from_name(const char *name);
const char *eplb_stats_format_name(eplb_stats_format_t format);

/* Reads a per-step series: SGLang's recorder JSON {"logical_count":
 * [steps][L][E]} (a plain [L][E] is one step), an HDF5 file holding a
 * numeric [steps][L][E] dataset (named logical_count, or the only 3-D
 * dataset at the root), a TensorRT-LLM dump directory (one step per
 * iteration) or a MindIE dump directory (one step per collection block of
 * its cumulative CSVs: what was counted since the block before; every CSV
 * must hold the same number of blocks, and a count that falls between
 * blocks is EPLB_ECOUNT).  Counts must be finite, >= 0 and <= 2^53. */
int eplb_series_read(eplb_series_t *out, const char *path, eplb_error_t *err);

/* ---- expert maps --------------------------------------------------- */

typedef enum {
  EPLB_MAP_AUTO = 0,
  EPLB_MAP_EXPERT_MAP,  /* MindSpeed-RL / vllm-ascend expert map JSON */
  EPLB_MAP_TRTLLM_YAML, /* TensorRT-LLM moe_load_balancer.yaml */
  EPLB_MAP_SGLANG,      /* SGLang {"physical_to_logical_map": [rows][S]} */
  EPLB_MAP_DEEPSEEK     /* DeepSeek EPLB {"phy2log", "log2phy", "logcnt"} */
} eplb_map_format_t;

/* Writes the placement atomically (temporary file, fsync, rename), after
 * checking it (EPLB_EMAP: nothing written; the expert-map JSON may not have
 * a GPU holding an expert twice: see eplb_placement_write_opts).
 * EPLB_MAP_AUTO picks
 * trtllm-yaml for a path ending in .yaml/.yml, else expert-map.  Expert
 * map layer_id = the layer's position 0..L-1 (MoE layer index); YAML keys =
 * layer_ids (must be distinct and >= 0). */
int eplb_placement_write(const eplb_placement_t *p, const char *path,
                         eplb_map_format_t format, eplb_error_t *err);

/* Options of eplb_placement_write_opts. */
typedef struct eplb_map_write_opts_s {
  int allow_duplicates; /* expert-map JSON: write a map in which a GPU
                           holds an expert twice (its consumers drop one
                           copy); default 0: EPLB_EMAP naming the layer and
                           GPU */
} eplb_map_write_opts_t;

/* eplb_placement_write with options (opts may be NULL: the defaults). */
int eplb_placement_write_opts(const eplb_placement_t *p, const char *path,
                              eplb_map_format_t format,
                              const eplb_map_write_opts_t *opts,
                              eplb_error_t *err);

/* Everything eplb_placement_write_opts checks, without writing: 0 when
 * the map can be written to `path` in `format` (eplb-sync checks its plan
 * on rank 0 before any weight moves, so a map that cannot be written never
 * gets as far as a migration). */
int eplb_placement_check_writable(const eplb_placement_t *p, const char *path,
                                  eplb_map_format_t format,
                                  const eplb_map_write_opts_t *opts,
                                  eplb_error_t *err);

/* Reads an expert map (format detected with EPLB_MAP_AUTO: JSON if the file
 * starts with '{').  E = largest expert id + 1; the result passes
 * eplb_placement_check (duplicates on a GPU allowed).  Expert map JSON: G =
 * device_count, layer ids from layer_id.  TensorRT-LLM YAML: layers sorted
 * by key (the layer ids); the file does not say G, so num_gpus is 1 and the
 * caller regroups: checks num_slots % G == 0 and sets num_gpus = G. */
int eplb_placement_read(eplb_placement_t *out, const char *path,
                        eplb_map_format_t format, eplb_error_t *err);

/* SGLang's rows are hidden layers 0..max(layer_ids): a row the placement
 * does not hold (a dense layer) is written as the contiguous placement.
 * SGLang and DeepSeek maps are read with num_gpus = 1 (the files do not say
 * G; the caller regroups) and layer ids 0..L-1; EPLB_MAP_AUTO reads them
 * when the JSON has "physical_to_logical_map" or "phy2log". */

/* Reads the map at `path` as the placement of the layers `stats` counts
 * (the current placement to re-plan from, or the map to report on).  Maps
 * number layers their own way, so: a map with a row per hidden layer
 * (SGLang, more rows than the statistics) is cut to the statistics' layer
 * ids; a map that does not say G (TensorRT-LLM YAML, SGLang, DeepSeek) is
 * regrouped onto num_gpus; then row l is named as the statistics' layer l
 * and E is the statistics'.  The layers must match, and so must num_slots
 * and num_gpus when they are > 0; `what` names the option in messages
 * ("--current-map").  The result passes eplb_placement_check (every
 * expert placed).  *out must be empty and stays empty on failure. */
int eplb_placement_read_for(eplb_placement_t *out, const char *path,
                            const eplb_stats_t *stats, int32_t num_slots,
                            int32_t num_gpus, const char *what,
                            eplb_error_t *err);

/* The same for a map that also holds `mtp_layers` (0..EPLB_MAX_MTP_LAYERS)
 * multi-token-prediction layers after the statistics' last layer (as
 * eplb_placement_append_layers writes them: ids last + 1, ...): they must
 * be there, and are left out of *out, which holds the statistics' layers.
 * mtp_layers 0 is eplb_placement_read_for. */
int eplb_placement_read_for_mtp(eplb_placement_t *out, const char *path,
                                const eplb_stats_t *stats, int32_t num_slots,
                                int32_t num_gpus, int32_t mtp_layers,
                                const char *what, eplb_error_t *err);

/* The format eplb_placement_write picks for EPLB_MAP_AUTO: TensorRT-LLM
 * YAML for a .yaml/.yml path, else the expert map JSON. */
eplb_map_format_t eplb_map_format_for_path(const char *path);

/* "expert-map", "trtllm-yaml", "sglang", "deepseek" ("auto" for reading);
 * -1 if unknown. */
int eplb_map_format_from_name(const char *name);
const char *eplb_map_format_name(eplb_map_format_t format);

#ifdef __cplusplus
}
#endif
#endif /* EPLB_FORMATS_H */
